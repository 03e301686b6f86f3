"""PPO throughput: rollout and train tokens/s, peak memory, and the generate/score/train time split.

Runs a few PPO steps of the real trainer for each (rollout batch size, response length) pair, each
in its own process so peak memory is per configuration. Needs an SFT and a reward artifact, e.g.
from ``make demo`` (runs/tiny).

    python benchmarks/ppo_throughput.py [--run-dir runs/tiny] [--steps 3] [--batch-sizes 16,32,64] [--lengths 16,32,64]

Before/after in one run: ``--baseline DIR`` also measures the ``rlhf`` package of another checkout
(e.g. ``git worktree add /tmp/ppo-main main``), alternating the two, and prints both rows and the
speed-up; ``--repeats N`` keeps the fastest of N runs of each (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import torch


def measure(run_dir: str, batch_size: int, length: int, steps: int) -> dict[str, float]:
    """One configuration, in this process: per-step averages, skipping the first (warm-up) step."""
    from rlhf.config import load_config
    from rlhf.stage import open_inputs
    from rlhf.stages import ppo

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(ppo.Config, "configs/tiny/ppo.yaml", [
            f"run_dir={tmp}", f"policy={run_dir}/sft", f"reward_model={run_dir}/reward",
            f"rollout_batch_size={batch_size}", f"mini_batch_size={batch_size}",
            f"micro_batch_size={min(batch_size, 32)}", f"total_episodes={batch_size * steps}",
            f"response_length={length}", "checkpoint_every=0", "report_to=[]",
            "sample_table_every=0",
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--lengths", default="16,32,64")
    parser.add_argument("--baseline", metavar="DIR", help="also measure the rlhf package of this checkout (before)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration; the fastest is reported")
    parser.add_argument("--one", nargs=2, type=int, metavar=("BATCH", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.run_dir, *args.one, args.steps)))
        return
    codes = {"this": os.getcwd()} if args.baseline is None else {"before": args.baseline, "after": os.getcwd()}
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, "
          f"steps per config: {args.steps} (first one not counted), best of {args.repeats}, policy: {args.run_dir}/sft")
    print(f"{'code':>6} {'batch':>5} {'len':>4} {'s/step':>7} {'rollout tok/s':>13} {'train tok/s':>11} "
          f"{'generate%':>9} {'score%':>7} {'train%':>7} {'peak MiB':>9}")
    for batch in map(int, args.batch_sizes.split(",")):
        for length in map(int, args.lengths.split(",")):
            best: dict[str, dict] = {}
            for _ in range(args.repeats):
                for name, code in codes.items():  # alternate, so a busy moment hits both
                    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, os.environ.get("PYTHONPATH", "")])}
                    out = subprocess.run([sys.executable, __file__, "--run-dir", args.run_dir, "--steps", str(args.steps),
                                          "--one", str(batch), str(length)], capture_output=True, text=True, check=True,
                                         env=env)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    if name not in best or r["step_s"] < best[name]["step_s"]:
                        best[name] = r
            for name, r in best.items():
                print(f"{name:>6} {r['batch']:5d} {r['length']:4d} {r['step_s']:7.3f} {r['rollout_tok_s']:13.0f} "
                      f"{r['train_tok_s']:11.0f} {r['generate_pct']:9.0f} {r['score_pct']:7.0f} {r['train_pct']:7.0f} "
                      f"{r['peak_mb']:9.0f}")
            if len(best) == 2:
                print(f"{'':>6} speed-up {best['before']['step_s'] / best['after']['step_s']:.2f}x per step")


if __name__ == "__main__":
    main()
