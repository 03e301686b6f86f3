"""python -m pipelines.arena --policies runs/tiny/sft runs/tiny/ppo runs/tiny/dpo [--config FILE] [key=value ...]

``--policies A B ...`` is shorthand for the override ``policies=[A,B,...]``.
"""

from __future__ import annotations

import sys

from rlhf.cli import main
from rlhf.stages import arena


def translate(argv: list[str]) -> list[str]:
    """Turn ``--policies A B C`` (up to the next option or key=value) into ``policies=[A,B,C]``."""
    if "--policies" not in argv:
        return argv
    start = argv.index("--policies")
    end = start + 1
    while end < len(argv) and not argv[end].startswith("-") and "=" not in argv[end]:
        end += 1
    return [*argv[:start], *argv[end:], f"policies=[{','.join(argv[start + 1 : end])}]"]


if __name__ == "__main__":
    main(arena, translate(sys.argv[1:]))
