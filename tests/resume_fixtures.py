"""Kill a TRL-trained stage right after it saves a checkpoint, then re-run it: the resume check every
TRL stage shares (its own resume is TRL's ``resume_from_checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf.artifacts import Artifact, ArtifactError, open_artifact
from rlhf.stage import run_stage


def kill_at_checkpoint_then_resume(stage, config, monkeypatch, checkpoint: str) -> tuple[Artifact, object]:
    """Run ``stage`` until its first checkpoint is saved and "kill" it there; check that nothing half-written
    is visible and ``checkpoint`` exists in its work dir; re-run. Returns (artifact, resume_from_checkpoint)."""
    from transformers import Trainer

    original_save, original_train = Trainer._save_checkpoint, Trainer.train

    def save_then_die(self, *args, **kwargs):
        original_save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, config, log=lambda _: None)
    with pytest.raises(ArtifactError):
        open_artifact(config.output_dir, stage.KIND)  # nothing half-written is visible
    work = Path(config.run_dir) / ".work" / stage.KIND
    assert list(work.glob(checkpoint)), f"no {checkpoint} in {work}"
    monkeypatch.setattr(Trainer, "_save_checkpoint", original_save)
    resumed = {}

    def spy(self, *args, **kwargs):
        resumed["from"] = kwargs.get("resume_from_checkpoint")
        return original_train(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train", spy)
    return run_stage(stage, config, log=lambda _: None), resumed.get("from")
