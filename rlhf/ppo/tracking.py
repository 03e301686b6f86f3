"""Where PPO metrics go: log_history.jsonl, a tqdm bar, TensorBoard and (optionally) W&B.

Only the main process writes; every process must still compute the metrics, since computing them
involves collective reductions.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rlhf.artifacts import read_jsonl
from rlhf.console import TRAINER_LOG

HISTORY_FILE = "log_history.jsonl"
SAMPLES_FILE = "samples.jsonl"
CONSOLE_KEYS = ("objective/scores", "objective/kl", "policy/approxkl_avg", "eps")


def read_history(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path)


def _truncate(path: Path, step: int) -> None:
    """Drop lines logged after ``step`` (by a run killed after its last checkpoint)."""
    rows = [row for row in read_history(path) if row["step"] <= step]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


class Tracker:
    def __init__(self, log_dir: Path, report_to: list[str], config: dict[str, Any], total_steps: int,
                 start_step: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.log_dir = Path(log_dir)
        self.writer = self.wandb = self.bar = None
        if not enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in (HISTORY_FILE, SAMPLES_FILE):
            _truncate(self.log_dir / name, start_step)
        report_to = [r for r in report_to if r != "none"]
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir / "runs"), purge_step=start_step + 1)
        if "wandb" in report_to:
            try:
                import wandb

                self.wandb = wandb.init(config=config, resume="allow")
            except ImportError:
                warnings.warn("report_to includes wandb but wandb is not installed; skipping it")
        self.bar = tqdm(total=total_steps, initial=start_step, desc="ppo", unit="step", dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **metrics}
        with open(self.log_dir / HISTORY_FILE, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        TRAINER_LOG.info("step %d: %s", step, metrics)  # the stage log (console too with --verbose)
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        self.bar.set_postfix({k.split("/")[-1]: f"{metrics[k]:.3g}" for k in CONSOLE_KEYS if k in metrics})

    def samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        """A table of (prompt, response, score) rows: samples.jsonl, TensorBoard text, W&B table."""
        if not self.enabled or not rows:
            return
        with open(self.log_dir / SAMPLES_FILE, "a") as fh:
            for row in rows:
                fh.write(json.dumps({"step": step, **row}) + "\n")
        columns = list(rows[0])
        if self.writer is not None:
            cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
            table = [" | ".join(columns), " | ".join("---" for _ in columns)]
            table += [" | ".join(cell(row[c]) for c in columns) for row in rows]
            self.writer.add_text("samples", "\n".join(table), step)
        if self.wandb is not None:
            import wandb

            self.wandb.log({"samples": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])},
                           step=step)

    def advance(self) -> None:
        if self.enabled:
            self.bar.update(1)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
