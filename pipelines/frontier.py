"""python -m pipelines.frontier --config configs/tiny/frontier.yaml [key=value ...]

Reward-KL frontier sweep over seeds from a finished run (base_run): PPO snapshots, DPO over beta,
best-of-n over n (optionally an ensemble-reward PPO and the other optimizers), every point evaluated
identically. Finished points are kept, so a killed sweep resumes where it stopped. Override any field,
e.g. ``seeds=[0,1]`` or ``ppo.kl_coef=0.02``.
"""

from __future__ import annotations

import argparse
import sys

from rlhf.artifacts import ArtifactError
from rlhf.cli import config_parser, fail
from rlhf.config import ConfigError, to_yaml
from rlhf.console import quiet, say
from rlhf.frontier import FrontierConfig, load_frontier_config, run_frontier


def parse(argv: list[str] | None) -> argparse.Namespace:
    return config_parser(FrontierConfig, "python -m pipelines.frontier", __doc__, "configs/tiny/frontier.yaml"
                         ).parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    try:
        config = load_frontier_config(args.config, list(args.overrides))
        if args.print_config:
            print(to_yaml(config), end="")
            return
        quiet(args.verbose)
        artifact = run_frontier(config, log=say)
    except (ConfigError, ArtifactError) as exc:
        fail(str(exc))
        return
    print(f"report: {artifact.path / 'report.md'}")


if __name__ == "__main__":
    main(sys.argv[1:])
