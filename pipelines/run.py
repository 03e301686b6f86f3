"""python -m pipelines.run --config configs/tiny/pipeline.yaml [--from STAGE] [--rounds N] [--annotate] [key=value ...]

The whole chain, skipping stages whose artifacts are up to date. Override any stage's field with
its section prefix, e.g. ``ppo.learning_rate=1e-5`` or ``run_dir=runs/exp2``. ``--rounds N`` runs
it N times, each round on the previous round's policy and fresh prompts (docs/rounds.md).
"""

from __future__ import annotations

import argparse
import sys

from annotation_ui.launch import annotate_until_done, vote_and_rate
from rlhf.artifacts import ArtifactError
from rlhf.cli import config_parser, fail
from rlhf.config import ConfigError, to_yaml
from rlhf.console import quiet, say
from rlhf.pipeline import STAGES, PipelineConfig, load_pipeline_config, run_pipeline
from rlhf.rounds import round_config
from rlhf.summary import summary_table


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = config_parser(PipelineConfig, "python -m pipelines.run", __doc__, "configs/tiny/pipeline.yaml")
    parser.add_argument("--from", dest="from_stage", choices=list(STAGES), help="re-run from this stage on")
    parser.add_argument("--force", action="store_true", help="re-run every stage")
    parser.add_argument("--rounds", type=int, help="iterative RLHF: this many rounds (the 'rounds' setting), "
                        "artifacts in <run_dir>/round-<k>/")
    parser.add_argument("--annotate", action="store_true",
                        help="open the annotation app after generation and wait for human labels "
                             "(instead of simulated annotators); with the arena stage, people vote in the arena "
                             "app too (instead of simulated voters)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    try:
        overrides = list(args.overrides)
        if args.rounds is not None:
            overrides.append(f"rounds={args.rounds}")
        if args.annotate:
            overrides += ["preferences.annotators=human", "arena.simulate=false"]
        config = load_pipeline_config(args.config, overrides)
        if args.print_config:
            print(to_yaml(config), end="")
            return
        from_stage = args.from_stage
        if args.annotate and config.rounds == 1:
            # Human labels change without the config changing, so preferences and everything after re-run.
            # (With rounds the preferences stage's own check of the label DB decides, so resuming a run
            # does not retrain the rounds people have finished.)
            order = config.stages
            if from_stage is None or order.index(from_stage) > order.index("preferences"):
                from_stage = "preferences"
        quiet(args.verbose)
        hook = annotate_until_done if args.annotate else None
        artifacts = run_pipeline(config, from_stage=from_stage, force=args.force, log=say, before_stage=hook)
        if args.annotate and "arena" in artifacts:
            artifacts["arena_votes"] = vote_and_rate(round_config(config, config.rounds))  # the last round's arena
    except (ConfigError, ArtifactError) as exc:
        fail(str(exc))
        return
    print(f"\nrun directory: {config.run_dir}")
    if config.rounds > 1 and "eval" in artifacts:
        print(f"rounds report: {config.run_dir}/rounds.md (last round below)")
    if "eval" in artifacts:
        print(summary_table(artifacts["eval"]))
        print(f"report: {artifacts['eval'].path / 'report.md'}")
    arena = artifacts.get("arena_votes") or artifacts.get("arena")
    if arena is not None and (arena.path / "report.md").exists():
        print(f"arena report: {arena.path / 'report.md'}")


if __name__ == "__main__":
    main(sys.argv[1:])
