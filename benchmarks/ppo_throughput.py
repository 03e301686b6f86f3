"""PPO throughput: rollout and train tokens/s, peak memory, and the generate/score/train time split.

Runs a few PPO steps of the real trainer for each (rollout batch size, response length) pair, each
in its own process so peak memory is per configuration. Needs an SFT and a reward artifact, e.g.
from ``make demo`` (runs/tiny).

    python benchmarks/ppo_throughput.py [--run-dir runs/tiny] [--steps 3] [--batch-sizes 16,32,64] [--lengths 16,32,64]

Each batch is one minibatch unless ``--mini-batch`` sets it (the tiny recipe: 32); its micro-batches are
the recipe's ``micro_batch_size`` unless ``--micro-batch`` sets it; ``--threads N`` sets torch's
intra-op threads in each run.

Before/after in one run: ``--baseline DIR`` also measures the ``rlhf`` package of another checkout
(e.g. ``git worktree add /tmp/ppo-main main``), alternating the two, and prints both rows and the
speed-up; each code runs in its own directory, with its own recipe; ``--repeats N`` keeps the fastest of
N runs of each (the machine may be shared). ``--result-seeds 0,1,2,3,4`` then trains the tiny recipe on
each seed with both codes and compares the results in law (mean over seeds, Welch interval). Both
codes also print the first and last step's metrics on one seed: equal to float rounding only while both
draw the same random numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

import torch


# Logged metrics compared between the two codes (first and last step, same seed).
TAIL = ("objective/scores", "objective/gold_reward", "objective/kl", "policy/entropy_avg", "val/response_length")
COMPARED = ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "policy/approxkl_avg",
            "policy/clipfrac_avg", "policy/entropy_avg")


def measure(run_dir: str, batch_size: int, length: int, steps: int, mini: int | None = None,
            micro: int | None = None, seed: int = 0) -> dict:
    """One configuration, in this process: per-step averages, skipping the first (warm-up) step."""
    from rlhf.config import load_config
    from rlhf.stage import open_inputs
    from rlhf.stages import ppo

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(ppo.Config, "configs/tiny/ppo.yaml", [
            f"run_dir={tmp}", f"policy={run_dir}/sft", f"reward_model={run_dir}/reward",
            f"rollout_batch_size={batch_size}", f"mini_batch_size={mini or batch_size}",
            *([f"micro_batch_size={micro}"] if micro else []), f"total_episodes={batch_size * steps}",
            f"response_length={length}", "checkpoint_every=0", "report_to=[]",
            "sample_table_every=0", f"seed={seed}",
        ])
        trainer = ppo.build_trainer(config, open_inputs(ppo, config))
        history = trainer.train()
    rows = history[1:] if len(history) > 1 else history
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    epochs = config.num_ppo_epochs
    tokens = batch_size * mean("val/response_length")
    peak_mb = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    step = mean("time/rollout") + mean("time/score") + mean("time/train")
    return {
        "batch": batch_size, "length": length, "step_s": step,
        "rollout_tok_s": tokens / mean("time/rollout"), "train_tok_s": tokens * epochs / mean("time/train"),
        "generate_pct": 100 * mean("time/rollout") / step, "score_pct": 100 * mean("time/score") / step,
        "train_pct": 100 * mean("time/train") / step, "peak_mb": peak_mb,
        "rollout_s": mean("time/rollout"), "score_s": mean("time/score"), "train_s": mean("time/train"),
        "first": {k: history[0][k] for k in COMPARED}, "last": {k: history[-1][k] for k in COMPARED},
        "tail": {k: sum(r[k] for r in history[-5:]) / len(history[-5:]) for k in TAIL},
    }


def compare_results(codes: dict[str, str], run_dir: str, seeds: list[int], steps: int, sizes: list[str]) -> None:
    """Each code trains the tiny recipe for ``steps`` steps on every seed: the mean of its last 5 steps'
    metrics, mean +- sd over seeds, and after - before with a 95 % Welch interval. Codes that sample
    other random numbers (another sampler) cannot match seed for seed; their results must match in law."""
    from scipy import stats

    tails: dict[str, list[dict]] = {name: [] for name in codes}
    for seed in seeds:
        for name, code in codes.items():
            tails[name].append(run_one(code, run_dir, steps, sizes, 64, 24, seed)["tail"])
    print(f"\nresults over seeds {seeds}, {steps} steps of the tiny recipe, mean of the last 5 steps (mean +- sd over seeds):")
    for key in TAIL:
        values = {name: [t[key] for t in rows] for name, rows in tails.items()}
        line = "  ".join(f"{name} {statistics.fmean(v):.4g} +- {statistics.stdev(v):.2g}" for name, v in values.items())
        if len(values) == 2:
            before, after = values["before"], values["after"]
            test = stats.ttest_ind(after, before, equal_var=False)
            low, high = test.confidence_interval(0.95)
            line += f"  after - before {statistics.fmean(after) - statistics.fmean(before):+.3g} [{low:+.3g}, {high:+.3g}]"
        print(f"  {key:<22} {line}")


def run_one(code: str, run_dir: str, steps: int, sizes: list[str], batch: int, length: int, seed: int = 0) -> dict:
    """``measure`` in a fresh process on ``code``'s rlhf package and recipe."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--run-dir", run_dir, "--steps", str(steps),
                          *sizes, "--seed", str(seed), "--one", str(batch), str(length)], capture_output=True,
                         text=True, check=True, env=env, cwd=code)  # each code reads its own recipe
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--lengths", default="16,32,64")
    parser.add_argument("--baseline", metavar="DIR", help="also measure the rlhf package of this checkout (before)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration; the fastest is reported")
    parser.add_argument("--mini-batch", type=int, help="episodes per optimizer step (default: the batch)")
    parser.add_argument("--micro-batch", type=int, help="episodes per forward/backward (default: the recipe's)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads in each run (default: torch's)")
    parser.add_argument("--result-seeds", help="e.g. 0,1,2,3,4: also train the tiny recipe on each seed with each "
                        "code and compare the results (see compare_results)")
    parser.add_argument("--result-steps", type=int, default=20, help="PPO steps of each --result-seeds run")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=2, type=int, metavar=("BATCH", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.run_dir, *args.one, args.steps, args.mini_batch, args.micro_batch, args.seed)))
        return
    codes = {"this": os.getcwd()} if args.baseline is None else {"before": os.path.abspath(args.baseline), "after": os.getcwd()}
    run_dir = os.path.abspath(args.run_dir)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, "
          f"steps per config: {args.steps} (first one not counted), best of {args.repeats}, policy: {args.run_dir}/sft")
    print(f"{'code':>6} {'batch':>5} {'len':>4} {'s/step':>7} {'rollout s':>9} {'score s':>7} {'train s':>7} "
          f"{'rollout tok/s':>13} {'train tok/s':>11} {'generate%':>9} {'score%':>7} {'train%':>7} {'peak MiB':>9}")
    sizes = [f"--{k}={v}" for k, v in (("mini-batch", args.mini_batch), ("micro-batch", args.micro_batch),
                                        ("threads", args.threads)) if v]
    for batch in map(int, args.batch_sizes.split(",")):
        for length in map(int, args.lengths.split(",")):
            best: dict[str, dict] = {}
            for _ in range(args.repeats):
                for name, code in codes.items():  # alternate, so a busy moment hits both
                    r = run_one(code, run_dir, args.steps, sizes, batch, length)
                    if name not in best or r["step_s"] < best[name]["step_s"]:
                        best[name] = r
            for name, r in best.items():
                print(f"{name:>6} {r['batch']:5d} {r['length']:4d} {r['step_s']:7.3f} {r['rollout_s']:9.3f} "
                      f"{r['score_s']:7.3f} {r['train_s']:7.3f} {r['rollout_tok_s']:13.0f} "
                      f"{r['train_tok_s']:11.0f} {r['generate_pct']:9.0f} {r['score_pct']:7.0f} {r['train_pct']:7.0f} "
                      f"{r['peak_mb']:9.0f}")
            if len(best) == 2:
                print(f"{'':>6} speed-up {best['before']['step_s'] / best['after']['step_s']:.2f}x per step")
                for when in ("first", "last"):  # same seed: equal to float rounding if both draw the same numbers
                    print(f"{'':>6} {when} step, before -> after: " + ", ".join(
                        f"{k} {best['before'][when][k]:.6g} -> {best['after'][when][k]:.6g}" for k in COMPARED))
    if args.result_seeds:
        compare_results(codes, run_dir, [int(x) for x in args.result_seeds.split(",")], args.result_steps, sizes)


if __name__ == "__main__":
    main()
