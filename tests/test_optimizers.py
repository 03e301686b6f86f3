"""The optimizers on the reward artifact: RLOO, GRPO, online DPO, best-of-n and rejection sampling.

Each runs a handful of steps on the tiny recipe with the shared SFT policy and the fixture reward
model (tests/ppo_fixtures.py), writes a policy artifact, and the eval stage accepts it.
"""

from __future__ import annotations

import pytest

from ppo_fixtures import build_reward_artifact, single_thread  # noqa: F401 (single_thread is autouse)
from rlhf.artifacts import ArtifactError, open_artifact
from rlhf.config import load_config
from rlhf.stage import run_stage
from rlhf.stages import grpo, online_dpo, rloo

TASK = ["data.num_examples=1500", "data.max_test_examples=64"]
# Tiny settings: 2 optimizer steps of 4 prompts x 2 completions, short responses.
ONLINE_SIZES = ["train.max_steps=2", "train.per_device_train_batch_size=4", "train.logging_steps=1",
                "num_prompts=16", "num_eval_prompts=8", "sampling.max_new_tokens=12"]
GROUP = ["train.num_generations=2"]


@pytest.fixture(scope="module")
def reward_artifact(sft_artifact):
    return build_reward_artifact(sft_artifact)


def stage_config(stage, recipe, run_dir, sft, reward, *extra):
    return load_config(stage.Config, recipe, [f"run_dir={run_dir}", f"policy={sft.path}",
                                              f"reward_model={reward.path}", *TASK, *extra])


@pytest.mark.parametrize("stage,extra", [(rloo, GROUP), (grpo, GROUP), (online_dpo, [])], ids=["rloo", "grpo", "online_dpo"])
def test_online_stage_writes_a_policy_artifact(stage, extra, tmp_path, sft_artifact, reward_artifact):
    config = stage_config(stage, f"configs/tiny/{stage.KIND}.yaml", tmp_path, sft_artifact, reward_artifact,
                          *ONLINE_SIZES, *extra)
    art = run_stage(stage, config, log=lambda _: None)
    print(art.metrics)
    assert art.metrics["train/steps"] == 2
    assert art.metrics["objective/kl"] > 0  # the policy moved away from the SFT reference
    assert art.manifest["training_sampling"]["temperature"] == config.sampling.temperature
