"""Resumable PPO checkpoints as plain dicts: ``state.pt`` (shared) + ``rng_rank{r}.pt`` (per process).

Written to a temporary directory and renamed into place, so a kill while saving keeps the previous
checkpoint intact; a failed run (NaN, kill) never overwrites the last good one.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from rlhf.config import ConfigError

CHECKPOINT_DIR = "checkpoint"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(work_dir: Path, state: dict[str, Any], accelerator: Accelerator) -> Path:
    """Every process calls this; the main process writes ``state``, each process its RNG state."""
    final, tmp, old = work_dir / CHECKPOINT_DIR, work_dir / f"{CHECKPOINT_DIR}.tmp", work_dir / f"{CHECKPOINT_DIR}.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        torch.save(state, tmp / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def checkpoint_step(work_dir: Path) -> int | None:
    """Step of the last complete checkpoint, or None."""
    state = Path(work_dir) / CHECKPOINT_DIR / "state.pt"
    if not state.is_file():
        return None
    return int(torch.load(state, map_location="cpu", weights_only=False)["step"])


def load_checkpoint(work_dir: Path, rank: int, world_size: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(state, this process's RNG state) of the last checkpoint, or None when there is none."""
    root = Path(work_dir) / CHECKPOINT_DIR
    if not (root / "state.pt").is_file():
        return None
    saved_ranks = len(list(root.glob("rng_rank*.pt")))
    if saved_ranks != world_size:
        raise ConfigError(
            f"checkpoint {root} was written by {saved_ranks} processes but this run has {world_size}; "
            "resume with the same number of processes, or set resume=false to start over"
        )
    # Our own files: they hold numpy/python RNG states, which weights_only loading refuses.
    state = torch.load(root / "state.pt", map_location="cpu", weights_only=False)
    rng = torch.load(root / f"rng_rank{rank}.pt", map_location="cpu", weights_only=False)
    return state, rng
