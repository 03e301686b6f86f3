"""Three rounds vs one round with the same labels: wall time and gold reward / KL of the final PPO policy.

python benchmarks/rounds.py [--seeds 0 1] [--jobs 1] [--cores-per-job 2] [--out /tmp/rounds-bench]

``rounds``: configs/tiny/rounds.yaml as it ships (3 rounds x 128 prompts, PPO 7 steps per round,
continuing). ``one``: the same recipe with rounds=1, all 384 prompts labelled at once and 21 PPO
steps, so both spend the same labels and the same PPO steps. Each (setup, seed) is one
``pipelines.run`` in its own run directory; seed s sets the seeds of SFT, generation, the simulated
annotators, the reward model and PPO (eval keeps seed 0: the same held-out prompts and sampling).
With --jobs N, N runs go at once, each pinned to --cores-per-job cores (taskset), so each run's wall
time is a run on that many cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPE = "configs/tiny/rounds.yaml"
SETUPS = {
    "rounds": [],
    "one": ["rounds=1", "generate.num_prompts=384", "ppo.total_episodes=1344"],
}
SEEDED = ("sft.seed", "generate.seed", "preferences.simulator.seed", "reward.seed", "ppo.seed")


def run_one(setup: str, seed: int, out: Path, cores: list[int] | None, timeout: float | None) -> dict:
    run_dir = out / f"{setup}-seed{seed}"
    cmd = [sys.executable, "-m", "pipelines.run", "--config", RECIPE, f"run_dir={run_dir}",
           *SETUPS[setup], *(f"{key}={seed}" for key in SEEDED)]
    if cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cores)) if cores else os.environ.get("OMP_NUM_THREADS", "")}
    started = time.time()
    with open(out / f"{setup}-seed{seed}.log", "w") as log:
        try:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={k: v for k, v in env.items() if v}).returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
    result = {"setup": setup, "seed": seed, "wall_s": round(time.time() - started, 1), "returncode": code}
    evals = sorted(run_dir.glob("round-*/eval")) or [run_dir / "eval"]
    for k, path in enumerate(evals, start=1):
        if (path / "metrics.json").is_file():
            ppo = json.loads((path / "metrics.json").read_text())["policies"]["ppo"]
            result[f"round{k}"] = {"gold": ppo["gold_reward"]["mean"], "gold_low": ppo["gold_reward"]["low"],
                                   "gold_high": ppo["gold_reward"]["high"], "kl": ppo["kl"]["mean"]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--cores-per-job", type=int, default=0, help="pin each run to this many cores (0 = no pinning)")
    parser.add_argument("--out", default="/tmp/rounds-bench")
    parser.add_argument("--timeout", type=float, default=None, help="stop a run after this many seconds")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(setup, seed) for seed in args.seeds for setup in args.setups]
    free = queue.Queue()  # core sets not in use: a run takes one and gives it back
    for i in range(args.jobs):
        free.put(list(range(i * args.cores_per_job, (i + 1) * args.cores_per_job)) if args.cores_per_job else None)

    def pinned(job: tuple[str, int]) -> dict:
        cores = free.get()
        try:
            return run_one(*job, out, cores, args.timeout)
        finally:
            free.put(cores)

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(pinned, todo))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.jobs} run(s) at once, "
          f"{args.cores_per_job or 'all'} cores each")
    print(f"{'setup':<7} {'seed':>4} {'wall':>7}  final PPO gold reward [95% CI]   KL   (per round: gold / KL)")
    for r in results:
        final = r.get(max((k for k in r if k.startswith("round")), default=""), None)
        rounds = "  ".join(f"{r[k]['gold']:+.3f}/{r[k]['kl']:.2f}" for k in sorted(k for k in r if k.startswith("round")))
        head = (f"{final['gold']:+.3f} [{final['gold_low']:+.3f}, {final['gold_high']:+.3f}]  {final['kl']:5.2f}"
                if final else f"no eval ({r['returncode']}, see {out}/{r['setup']}-seed{r['seed']}.log)")
        print(f"{r['setup']:<7} {r['seed']:>4} {r['wall_s']:>6.0f}s  {head}   ({rounds})")


if __name__ == "__main__":
    main()
