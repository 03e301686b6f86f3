"""Shared fixtures: a tiny SFT artifact trained once per test session (about 10 s on 2 cores)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rlhf.config import load_config  # noqa: E402

# Small but real: enough data and steps that the policy writes well-formed reviews.
TINY_SFT_OVERRIDES = [
    "data.num_examples=2000",
    "data.max_test_examples=64",
    "train.num_train_epochs=2",
    "train.per_device_train_batch_size=16",
    "train.report_to=[]",
    "num_samples=4",
]


def tiny_sft_config(run_dir, *extra: str):
    from rlhf.stages import sft

    return load_config(sft.Config, "configs/tiny/sft.yaml", [f"run_dir={run_dir}", *TINY_SFT_OVERRIDES, *extra])


@pytest.fixture(scope="session")
def sft_artifact(tmp_path_factory):
    """A trained tiny SFT policy artifact shared by every test that needs a policy."""
    from rlhf.stage import run_stage
    from rlhf.stages import sft

    run_dir = tmp_path_factory.mktemp("shared_run")
    return run_stage(sft, tiny_sft_config(run_dir), log=lambda _: None)
