"""Running a stage: resolve its input artifacts, skip it when up to date, otherwise call ``run``.

A stage module defines ``KIND`` (the artifact kind it writes), ``Config`` (its dataclass, with an
``output_dir`` field), ``inputs(config) -> {name: (path, kind)}`` and
``run(config, inputs) -> Artifact``; optionally ``up_to_date(config, artifact) -> bool`` when its
output also depends on something outside the artifacts. Stages meet only through artifacts.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from rlhf.artifacts import STAGE_STARTED, Artifact, is_up_to_date, open_artifact, place_in_run
from rlhf.console import say, stage_log
from rlhf.summary import result_line


def open_inputs(stage: ModuleType, config: Any) -> dict[str, Artifact]:
    return {name: open_artifact(path, kind) for name, (path, kind) in stage.inputs(config).items()}


def log_file(config: Any) -> Path:
    """``<run_dir>/logs/<output name>.log`` (``logs/round-2/ppo.log`` in a run with rounds): the full library
    and trainer logs of the stage's last run."""
    output = Path(config.output_dir)
    return Path(getattr(config, "run_dir", output.parent)) / "logs" / f"{place_in_run(config)}.log"


def run_stage(stage: ModuleType, config: Any, force: bool = False, log: Callable[[str], None] = say) -> Artifact:
    inputs = open_inputs(stage, config)
    if not force and is_up_to_date(config.output_dir, stage.KIND, config, inputs):
        artifact = open_artifact(config.output_dir, stage.KIND)
        # Optional hook for state outside the artifact store (e.g. a label DB that people keep adding to).
        fresh = getattr(stage, "up_to_date", None)
        if fresh is None or fresh(config, artifact):
            log(f"[{stage.KIND}] up to date, skipped: {config.output_dir} (use --force to re-run)")
            return artifact
    path = log_file(config)
    log(f"[{stage.KIND}] running -> {config.output_dir} (full log: {path})")
    started = STAGE_STARTED.set(time.time())
    try:
        with stage_log(path):
            artifact = stage.run(config, inputs)
    finally:
        STAGE_STARTED.reset(started)
    log(result_line(artifact))
    return artifact
