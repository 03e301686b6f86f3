"""The optimizers on the reward artifact: RLOO, GRPO, online DPO, best-of-n and rejection sampling.

Each runs a couple of steps on the tiny recipe (and on its GPT-2 recipe, data and sizes swapped for
the tiny ones) with the shared SFT policy and the fixture reward model (tests/ppo_fixtures.py),
writes a policy artifact, and the eval stage samples it next to the SFT policy.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from ppo_fixtures import build_reward_artifact, single_thread  # noqa: F401 (single_thread is autouse)
from resume_fixtures import kill_at_checkpoint_then_resume
from rlhf.logprobs import best_of_n_kl_bound
from rlhf.config import ConfigError, load_config
from rlhf.models import load_causal_lm
from rlhf.policies import POLICY_KINDS
from rlhf.stage import run_stage
from rlhf.stages import best_of_n, eval as eval_stage, grpo, online_dpo, rejection_sampling, rloo

# The embedded task at the sft_artifact fixture's size; replaces a GPT-2 recipe's hub dataset.
TASK = ["data.dataset=embedded:reviews", "data.num_examples=1500", "data.max_test_examples=64",
        "data.shuffle=false", "data.prompt_min_words=4", "data.prompt_max_words=8"]
# 2 optimizer steps of 4 completions (2 prompts x 2 for RLOO/GRPO), short responses.
ONLINE_SIZES = ["train.max_steps=2", "train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=1",
                "train.logging_steps=1", "train.report_to=[]", "num_prompts=16", "num_eval_prompts=8",
                "sampling.max_new_tokens=12", "sampling.batch_size=16"]
SIZES = {
    rloo: [*ONLINE_SIZES, "train.num_generations=2"],
    grpo: [*ONLINE_SIZES, "train.num_generations=2", "lora.enabled=true"],  # the LoRA path (reference = adapter off)
    online_dpo: ONLINE_SIZES,
    rejection_sampling: ["train.max_steps=2", "train.per_device_train_batch_size=4", "train.report_to=[]",
                         "train.gradient_accumulation_steps=1", "num_prompts=8", "num_eval_prompts=8", "n=2",
                         "rounds=2", "sampling.max_new_tokens=12"],
    best_of_n: ["num_eval_prompts=8", "n=3", "sampling.max_new_tokens=12"],
}


@pytest.fixture(scope="module")
def reward_artifact(sft_artifact):
    return build_reward_artifact(sft_artifact)


def stage_config(stage, recipe_dir, run_dir, sft, reward, *extra):
    return load_config(stage.Config, f"configs/{recipe_dir}/{stage.KIND}.yaml", [
        f"run_dir={run_dir}", f"policy={sft.path}", f"reward_model={reward.path}", *TASK, *SIZES[stage], *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sft_artifact, reward_artifact):
    """Every new stage's artifact from its tiny recipe."""
    run_dir = tmp_path_factory.mktemp("optimizers")
    return {stage.KIND: run_stage(stage, stage_config(stage, "tiny", run_dir, sft_artifact, reward_artifact),
                                  log=lambda _: None)
            for stage in (rloo, grpo, online_dpo, rejection_sampling, best_of_n)}


@pytest.mark.parametrize("kind", ["rloo", "grpo", "online_dpo", "rejection_sampling"])
def test_trained_policy_moved_from_sft_and_is_a_policy_artifact(trained, kind):
    art = trained[kind]
    assert art.kind in POLICY_KINDS
    assert art.metrics["objective/kl"] > 0  # sampled KL to the SFT reference: the policy moved
    assert math.isfinite(art.metrics["eval/gold_reward"]) and math.isfinite(art.metrics["eval/rm_score"])
    load_causal_lm(art.path)  # a plain HF causal-LM dir
    history = [json.loads(line) for line in (art / "log_history.jsonl").read_text().splitlines()]
    assert history, "no training log"
    if kind != "rejection_sampling":
        assert art.metrics["train/steps"] == 2
        # Every generated completion's tokens: 2 steps of 4 (RLOO/GRPO) or 8 (online DPO: 2 per prompt)
        # completions of at most 12 tokens.
        assert 2 * 4 <= art.metrics["train/tokens_generated"] <= 2 * 8 * 12
        # The trainer generated with the recipe's sampling settings (recorded in the manifest), which are
        # the eval's: the tiny recipes train where they are evaluated (issue 12, equal footing).
        eval_temperature = load_config(eval_stage.Config, "configs/tiny/eval.yaml", []).sampling.temperature
        assert art.manifest["training_sampling"]["temperature"] == art.config["sampling"]["temperature"] == eval_temperature
    else:
        assert [r["round"] for r in art.manifest["rounds"]] == [0, 1]
        # 2 rounds of n = 2 samples for each of 8 prompts, 1 to 12 tokens each
        assert 2 * 2 * 8 <= art.metrics["train/tokens_generated"] <= 2 * 2 * 8 * 12


def test_grpo_and_rloo_recipes_keep_a_kl_penalty(trained):
    assert trained["grpo"].config["train"]["beta"] > 0 and trained["rloo"].config["train"]["beta"] > 0


def test_eval_samples_every_new_policy_and_bounds_best_of_n_kl(tmp_path, trained, sft_artifact, reward_artifact):
    policies = {name: art.path for name, art in trained.items()}
    config = load_config(eval_stage.Config, "configs/tiny/eval.yaml", [
        f"run_dir={tmp_path}", f"reference={sft_artifact.path}", f"reward_model={reward_artifact.path}",
        "policies.ppo=null", "policies.dpo=null", f"policies.sft={sft_artifact.path}",
        *(f"policies.{name}={path}" for name, path in policies.items()), *TASK[:3],
        "num_prompts=16", "bootstrap_resamples=50", "sampling.max_new_tokens=12"])
    report = run_stage(eval_stage, config, log=lambda _: None)
    metrics = json.loads((report / "metrics.json").read_text())["policies"]
    assert set(metrics) == {"sft", *policies}
    bound = best_of_n_kl_bound(3)
    assert metrics["best_of_n"]["kl"]["mean"] == pytest.approx(bound) and "bound" in metrics["best_of_n"]["kl_note"]
    # Best-of-3 by the reward model scores higher on it than one SFT sample per prompt, on average
    # (expected gap 0.85 std of one score; 16 prompts put the chance of a miss below 1%).
    assert metrics["best_of_n"]["rm_score"]["mean"] > metrics["sft"]["rm_score"]["mean"]
    assert all(metrics[name]["kl"]["mean"] > 0 for name in policies)


def test_gpt2_recipes_run_on_the_tiny_stand_in(tmp_path, sft_artifact, reward_artifact):
    """The configs/gpt2 recipes' trainer settings are valid for their TRL trainers (sizes and data swapped)."""
    for stage in (rloo, grpo, online_dpo, rejection_sampling, best_of_n):
        art = run_stage(stage, stage_config(stage, "gpt2", tmp_path, sft_artifact, reward_artifact), log=lambda _: None)
        assert art.kind == stage.KIND


def test_killed_rloo_resumes_from_its_trl_checkpoint(tmp_path, monkeypatch, sft_artifact, reward_artifact):
    config = stage_config(rloo, "tiny", tmp_path, sft_artifact, reward_artifact, "train.save_steps=1")
    art, resumed_from = kill_at_checkpoint_then_resume(rloo, config, monkeypatch, "checkpoint-1")
    assert resumed_from is True and art.metrics["train/steps"] == 2
    assert art.metrics["train/tokens_generated"] is None  # the count before the kill is lost: not reported
    assert not (tmp_path / ".work" / "rloo").exists()  # checkpoints removed once the artifact is complete


def test_sampling_is_set_once(tmp_path, sft_artifact, reward_artifact):
    config = stage_config(rloo, "tiny", tmp_path, sft_artifact, reward_artifact, "train.temperature=1.3")
    with pytest.raises(ConfigError, match="train.temperature=1.3 differs from sampling.temperature"):
        run_stage(rloo, config, log=lambda _: None)


def test_best_of_n_artifact_picks_by_its_recorded_ensemble_objective(tmp_path, monkeypatch):
    from rlhf import best_of_n as bon
    from rlhf.reward_model import EnsembleObjective

    objectives = []
    monkeypatch.setattr(bon, "load_policy", lambda path: SimpleNamespace(to=lambda device: SimpleNamespace(eval=lambda: "policy")))
    monkeypatch.setattr(bon.RewardModel, "load", lambda path, device, objective=None: objectives.append(objective) or "rm")
    monkeypatch.setattr(bon, "sample_best_of_n", lambda policy, tok, prompts, sampling, seed, n, rm: (policy, n, rm))
    bon.write_recipe(tmp_path, tmp_path / "sft", tmp_path / "reward", 4, EnsembleObjective("worst_case", 0.5))
    assert bon.sample_artifact(tmp_path, None, [], None, 0) == ("policy", 4, "rm")
    assert objectives[-1] == EnsembleObjective("worst_case", 0.5)
    recipe = json.loads((tmp_path / bon.BEST_OF_N_FILE).read_text())
    del recipe["reward_ensemble"]  # an artifact from before the objective was recorded: the mean, as then
    (tmp_path / bon.BEST_OF_N_FILE).write_text(json.dumps(recipe))
    bon.sample_artifact(tmp_path, None, [], None, 0)
    assert objectives[-1] == EnsembleObjective("mean")
