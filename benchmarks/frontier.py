"""Wall time of the whole frontier sweep (issue 12: at most 15 minutes on 2 cores for the tiny task).

Runs ``python -m pipelines.frontier --config configs/tiny/frontier.yaml`` from scratch into a fresh
output (its points go to <base_run>/.work/<output name>, so nothing finished earlier is reused) and
prints the wall time and the report's KL-budget table. Needs a finished base run:

    python -m pipelines.run --config configs/tiny/pipeline.yaml run_dir=runs/tiny
    python benchmarks/frontier.py [--base-run runs/tiny] [key=value ...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-run", default="runs/tiny")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's frontier artifact and points")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="sweep overrides, e.g. seeds=[0]")
    args = parser.parse_args()
    name = f"frontier-bench-{int(time.time())}"
    output = Path(args.base_run) / name
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.frontier", "--config", "configs/tiny/frontier.yaml",
                    f"base_run={args.base_run}", f"output_dir={output}", *args.overrides], check=True)
    wall = time.perf_counter() - started
    report = (output / "report.md").read_text()
    table = report[report.index("## At a KL budget"):report.index("## Over-optimization")]
    print(f"\nfrontier sweep wall time: {wall:.0f} s ({wall / 60:.1f} min)\n\n{table}")
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(Path(args.base_run) / ".work" / name, ignore_errors=True)


if __name__ == "__main__":
    main()
