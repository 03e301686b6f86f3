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


# A test that needs a trained artifact is slow, whichever file it is in: `pytest -m "not slow"` skips it.
TRAINING_FIXTURES = {"sft_artifact", "preferences_artifact", "trained_reward_artifact"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def sft_artifact(tmp_path_factory):
    """A trained tiny SFT policy artifact shared by every test that needs a policy."""
    from rlhf.stage import run_stage
    from rlhf.stages import sft

    run_dir = tmp_path_factory.mktemp("shared_run")
    return run_stage(sft, tiny_sft_config(run_dir), log=lambda _: None)


# Simulated annotators: 3 per pair, each flipping the gold order with probability 0.1 (majority vote).
# Train: every pair of 4 samples per prompt; test: each held-out prompt's best-vs-worst pair.
PREFERENCE_FIXTURE = {"num_prompts": 256, "num_test_prompts": 96, "candidates_per_prompt": 4, "noise": 0.1,
                      "min_gap": 0.2}


@pytest.fixture(scope="session")
def preferences_artifact(sft_artifact, tmp_path_factory):
    """A "preferences" artifact of sft_artifact's samples ordered by gold reward (see tests/preference_fixtures.py)."""
    from preference_fixtures import make_preferences_artifact

    return make_preferences_artifact(sft_artifact, tmp_path_factory.mktemp("prefs") / "preferences", **PREFERENCE_FIXTURE)


@pytest.fixture(scope="session")
def trained_reward_artifact(tmp_path_factory, sft_artifact, preferences_artifact):
    """The reward stage trained on preferences_artifact (used by the reward and PPO tests)."""
    from preference_fixtures import reward_config
    from rlhf.stage import run_stage
    from rlhf.stages import reward

    run_dir = tmp_path_factory.mktemp("reward_run")
    return run_stage(reward, reward_config(run_dir, sft_artifact, preferences_artifact), log=lambda _: None)
