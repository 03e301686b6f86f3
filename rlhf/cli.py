"""The command line shared by every ``python -m pipelines.<stage>``."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from rlhf.artifacts import ArtifactError
from rlhf.config import ConfigError, describe, load_config, to_yaml
from rlhf.console import quiet, say
from rlhf.stage import run_stage

VERBOSE_HELP = "show library warnings and every trainer log on the console (default: only in <run_dir>/logs/)"


def config_parser(config_cls: type, prog: str, description: str, example: str = "configs/tiny/sft.yaml",
                  ) -> argparse.ArgumentParser:
    """The options every command shares: --config, --print-config, --verbose, key=value overrides, and a
    --help that lists every config field. Commands add their own (``--force``, ``--rounds`` ...)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config fields (override any with key=value, e.g. train.learning_rate=3e-4):\n"
        + "\n".join(describe(config_cls)),
    )
    parser.add_argument("-h", "--help", action="help", help="show this help and every config field")
    parser.add_argument("--config", help=f"YAML recipe, e.g. {example}")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return parser


def parse(config_cls: type, argv: list[str] | None, prog: str, description: str):
    parser = config_parser(config_cls, prog, description)
    parser.add_argument("--force", action="store_true", help="re-run even if the artifact is up to date")
    args = parser.parse_args(argv)
    return args, load_config(config_cls, args.config, args.overrides)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(stage: ModuleType, argv: list[str] | None = None) -> None:
    prog = f"python -m pipelines.{stage.__name__.rsplit('.', 1)[-1]}"
    try:
        args, config = parse(stage.Config, argv, prog, (stage.__doc__ or "").strip())
        if args.print_config:
            print(to_yaml(config), end="")
            return
        quiet(args.verbose)
        artifact = run_stage(stage, config, force=args.force)
    except (ConfigError, ArtifactError) as exc:
        fail(str(exc))
        return
    say(f"[{stage.KIND}] artifact: {artifact.path}")
    if (artifact.path / "report.md").is_file():  # also when the stage was skipped as up to date
        say(f"[{stage.KIND}] report: {artifact.path / 'report.md'}")
