"""What a run prints: one progress bar per training stage on the console, the full logs in a file.

Left alone, the libraries print hundreds of lines per run (``datasets`` map bars, weight-loading bars
and load reports, ``pin_memory`` warnings, raw trainer log dicts), once per process under torchrun.
Entry points call :func:`quiet`; :func:`stage_log` sends a running stage's library logs, warnings and
trainer logs to a file (``<run_dir>/logs/<stage>.log``); :func:`attach` gives a Trainer one tqdm bar and
points its TensorBoard writer at a directory that the stage copies into its artifact.
With ``verbose`` the same logs also go to the console.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

from tqdm.auto import tqdm
from transformers import TrainerCallback

# Loggers whose records go to the stage log; "py.warnings" carries warnings.warn() (captureWarnings).
LIBRARIES = ("transformers", "datasets", "accelerate", "trl", "peft", "torch", "py.warnings", "rlhf")
TRAINER_LOG = logging.getLogger("rlhf.trainer")


def is_main_process() -> bool:
    """Rank 0 (or no launcher): the one process that prints and writes logs under torchrun/accelerate."""
    return int(os.environ.get("RANK", "0")) == 0


def say(message: str) -> None:
    """print() on the main process only, so lines are not repeated once per process."""
    if is_main_process():
        print(message, flush=True)


class _TqdmHandler(logging.StreamHandler):
    """Writes above an active progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never crash the run
            self.handleError(record)


_CONSOLE = _TqdmHandler()
_CONSOLE.setFormatter(logging.Formatter("%(message)s"))


def quiet(verbose: bool = False) -> None:
    """Library defaults for a readable console; idempotent.

    Without ``verbose`` only errors reach the console; warnings, load reports and trainer logs still
    reach the stage log. Non-main processes under torchrun print errors only, and no progress bars.
    """
    import datasets
    import huggingface_hub.utils
    import transformers

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main = is_main_process()
    # Library loggers keep WARNING (so the stage log gets warnings) but lose their own stderr handlers.
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_default_handler()
    datasets.utils.logging.set_verbosity_warning()
    logging.captureWarnings(True)
    _CONSOLE.setLevel(logging.INFO if verbose and main else logging.ERROR)
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        logger.propagate = False
        if name == "rlhf":
            logger.setLevel(logging.INFO)
        elif logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
        if _CONSOLE not in logger.handlers:
            logger.addHandler(_CONSOLE)
    if not verbose or not main:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()


@contextlib.contextmanager
def stage_log(path: Path) -> Iterator[Path]:
    """While a stage runs, append library logs, warnings and trainer logs to ``path`` (main process only)."""
    if not is_main_process():
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    for logger in loggers:
        logger.addHandler(handler)
    # Without quiet() (library use), INFO records of the trainer log would be dropped before the file.
    level = TRAINER_LOG.level
    TRAINER_LOG.setLevel(logging.INFO)
    try:
        yield path
    finally:
        TRAINER_LOG.setLevel(level)
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


class StageProgress(TrainerCallback):
    """One tqdm bar per training run (with ETA and the last loss); every trainer log to the stage log."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: tqdm | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.desc, unit="step",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        TRAINER_LOG.info("step %d: %s", state.global_step, logs)
        if self.bar is not None and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3g}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def attach(trainer: Any, desc: str, tensorboard_dir: Path) -> None:
    """Replace a Trainer's console output by :class:`StageProgress`; TensorBoard writes to ``tensorboard_dir``.

    transformers 5 has no TrainingArguments field for the TensorBoard directory (only the
    TENSORBOARD_LOGGING_DIR variable, read when the Trainer is built); its default is
    ``./runs/<date>_<host>`` of the current directory for logs written before ``train()``.
    """
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StageProgress(desc))
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(tensorboard_dir)


def keep_logs(tensorboard_dir: Path, artifact_dir: Path) -> None:
    """Copy the TensorBoard event files into the artifact's ``logs/`` (``tensorboard --logdir <run_dir>``)."""
    if tensorboard_dir.is_dir():
        shutil.copytree(tensorboard_dir, artifact_dir / "logs", dirs_exist_ok=True)
