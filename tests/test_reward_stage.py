"""Reward stage: learns simulated gold preferences, scores as trained, normalizes, refuses bad inputs, LoRA."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import load_from_disk

from rlhf.artifacts import ArtifactError, open_artifact
from rlhf.cli import main
from rlhf.config import load_config
from rlhf.data import held_out_prompts
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig, join, sample
from preference_fixtures import reward_config
from rlhf.stage import run_stage
from rlhf.stages import reward

# Held-out prompts of the same small task the SFT fixture was trained on.
@pytest.fixture(scope="module")
def reward_artifact(trained_reward_artifact):
    return trained_reward_artifact


@pytest.mark.slow
def test_reward_model_learns_gold_preferences(reward_artifact):
    m = reward_artifact.metrics
    assert m["eval/rewards/accuracies"] >= 0.8, m
    assert m["train/rewards/accuracies"] >= 0.8, m  # scored through the artifact, beside the held-out pairs
    assert m["eval/gold_correlation"] > 0.3, m
    rows = json.loads((reward_artifact / "calibration.json").read_text())
    assert sum(r["count"] for r in rows) == m["eval/pairs"]
    assert all(0.5 <= r["mean_confidence"] <= 1 for r in rows)
    assert "| confidence bin |" in reward_artifact.manifest["calibration_table"]
    assert "| confidence bin |" in (reward_artifact / "README.md").read_text()
    assert f"(training pairs: {m['train/rewards/accuracies']:.3f}" in (reward_artifact / "README.md").read_text()
    history = [json.loads(line) for line in (reward_artifact / "log_history.jsonl").read_text().splitlines()]
    assert any("train/loss" in row for row in history) and any("eval/accuracy" in row for row in history)
    assert all("step" in row for row in history)


@pytest.mark.slow
def test_score_matches_the_trained_forward_on_training_inputs(reward_artifact, preferences_artifact):
    """RewardModel must tokenize as RewardTrainer did: prompt + response + EOS, TRL's own preprocessing."""
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    rm = RewardModel.load(reward_artifact.path)
    pairs = load_from_disk(str(preferences_artifact / "data"))["test"].select(range(8)).select_columns(
        ["prompt", "chosen", "rejected"])
    # RewardTrainer's dataset preparation and collator, as in training (they do not use the trainer instance).
    args = RewardConfig(output_dir="unused", max_length=None, report_to=[], bf16=False)
    prepared = RewardTrainer._prepare_dataset(None, pairs, rm.tokenizer, args, "test")
    batch = DataCollatorForPreference(pad_token_id=rm.tokenizer.pad_token_id)(list(prepared))
    with torch.no_grad():
        trained = rm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    texts = [join(p, c) for p, c in zip(pairs["prompt"], pairs["chosen"])]
    texts += [join(p, r) for p, r in zip(pairs["prompt"], pairs["rejected"])]
    assert torch.equal(rm.encode(texts[:1])["input_ids"][0], torch.tensor(prepared[0]["chosen_ids"]))
    torch.testing.assert_close(rm.raw_scores(texts), trained, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_normalization_centres_reference_samples(reward_artifact, sft_artifact):
    # Fresh reference samples (another seed) from the same held-out prompts: mean ~0, std ~1 after normalization.
    rm = RewardModel.load(reward_artifact.path)
    policy, tokenizer = load_causal_lm(sft_artifact.path), load_tokenizer(sft_artifact.path)
    prompts = held_out_prompts(reward_config(".", sft_artifact, sft_artifact).data, 64)
    responses = [r for group in sample(policy, tokenizer, prompts, SamplingConfig(), num_samples=2, seed=123,
                                       progress=False) for r in group]
    scores = rm.score([join(p, r) for p, r in zip([p for p in prompts for _ in range(2)], responses)])
    assert abs(scores.mean().item()) < 0.35 and 0.7 < scores.std().item() < 1.3, (scores.mean(), scores.std())
    norm = json.loads((reward_artifact / "normalization.json").read_text())
    raw = rm.raw_scores([join(prompts[0], responses[0])])
    assert torch.allclose(rm.score([join(prompts[0], responses[0])]), (raw - norm["mean"]) / norm["std"])


def test_wrong_input_kind_is_a_clear_error(tmp_path, sft_artifact, capsys):
    # A policy artifact where the preferences should be: refused before any training, naming the fix.
    config = reward_config(tmp_path, sft_artifact, sft_artifact)
    with pytest.raises(ArtifactError, match=r"is a 'sft' artifact, but a preferences artifact is needed"):
        run_stage(reward, config, log=lambda _: None)
    with pytest.raises(SystemExit) as exc:
        main(reward, ["--config", "configs/tiny/reward.yaml", f"run_dir={tmp_path}", f"preferences={sft_artifact.path}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "preferences" in err


def test_missing_base_artifact_says_what_to_run(tmp_path, preferences_artifact, sft_artifact):
    config = load_config(reward.Config, "configs/tiny/reward.yaml", [
        f"run_dir={tmp_path}", f"preferences={preferences_artifact.path}", f"reference={sft_artifact.path}"])
    with pytest.raises(ArtifactError, match="pipelines.sft"):
        run_stage(reward, config, log=lambda _: None)


@pytest.mark.slow
def test_lora_reward_model_trains_and_loads(tmp_path, sft_artifact, preferences_artifact):
    config = reward_config(tmp_path, sft_artifact, preferences_artifact, "lora.enabled=true", "lora.merge=false",
                           "train.num_train_epochs=1", "train.learning_rate=2e-3", "num_eval_prompts=16")
    art = run_stage(reward, config, log=lambda _: None)
    assert (art / "adapter_config.json").is_file() and (art / "base" / "config.json").is_file()
    rm = RewardModel.load(art.path)
    texts = ["I watched Paper Kings last weekend. It was wonderful.", "I watched Paper Kings last weekend. Awful."]
    scores = rm.raw_scores(texts)
    assert torch.isfinite(scores).all() and scores[0] != scores[1]
    # The adapter (with its trained score head) is what is loaded, not the untouched base.
    base = RewardModel.load(art / "base")
    assert not torch.allclose(base.raw_scores(texts), scores)
    assert art.metrics["eval/rewards/accuracies"] > 0.5


def test_empty_test_split_is_a_clear_error(tmp_path):
    from dataclasses import dataclass

    from datasets import Dataset, DatasetDict

    from rlhf.artifacts import write_artifact
    from rlhf.preferences.artifact import load_pairs

    @dataclass
    class Cfg:
        x: int = 0

    row = {"prompt": "p", "chosen": " good.", "rejected": " bad.", "prompt_id": "1", "annotators": ["a"], "agreement": 1.0}
    data = DatasetDict(train=Dataset.from_list([row]), test=Dataset.from_dict({k: [] for k in row}))
    with write_artifact(tmp_path / "prefs", "preferences", Cfg()) as out:
        data.save_to_disk(str(out.path / "data"))
    with pytest.raises(ArtifactError, match="empty 'test' or 'train' split"):
        load_pairs(open_artifact(tmp_path / "prefs", "preferences"))


@pytest.fixture(scope="module")
def ensemble_artifact(tmp_path_factory, sft_artifact, preferences_artifact):
    """Two members, a short run each (the wiring, not the accuracy, is under test)."""
    config = reward_config(tmp_path_factory.mktemp("ensemble_run"), sft_artifact, preferences_artifact,
                           "ensemble_size=2", "train.max_steps=12", "num_eval_prompts=16")
    return run_stage(reward, config, log=lambda _: None)


def _pair_texts(preferences_artifact) -> list[str]:
    test = load_from_disk(str(preferences_artifact / "data"))["test"]
    return [join(p, r) for p, c, r in zip(test["prompt"], test["chosen"], test["rejected"]) for r in (c, r)]


@pytest.mark.slow
def test_ensemble_members_differ_and_objectives_combine_them(ensemble_artifact, preferences_artifact):
    from rlhf.reward_model import EnsembleObjective

    texts = _pair_texts(preferences_artifact)
    rm = RewardModel.load(ensemble_artifact.path)
    assert rm.ensemble_size == 2 and (ensemble_artifact / "members" / "1" / "normalization.json").is_file()
    members = rm.member_scores(texts)
    assert members.shape == (2, len(texts)) and (members[0] - members[1]).abs().mean() > 0.05  # seed + bootstrap
    assert torch.equal(members[0], rm.normalized_scores(texts))  # member 0 is the top-level model
    mean = rm.score(texts)  # the default objective
    assert torch.allclose(mean, members.mean(0))
    worst = RewardModel.load(ensemble_artifact.path, objective=EnsembleObjective("worst_case")).score(texts)
    assert (worst <= mean).all() and (worst < mean).any()
    cautious = RewardModel.load(ensemble_artifact.path, objective=EnsembleObjective("uncertainty_weighted", 2.0))
    assert torch.allclose(cautious.score(texts), mean - 2.0 * members.std(0, correction=0))
    m = ensemble_artifact.metrics
    assert m["ensemble_size"] == 2 and 0 <= m["eval/member_1/rewards/accuracies"] <= 1
    assert m["reference/ensemble_std"] > 0 and "eval/ensemble/rewards/accuracies" in m


@pytest.mark.slow
def test_ppo_trains_on_an_ensemble_with_the_chosen_objective(ensemble_artifact, sft_artifact, tmp_path, monkeypatch):
    from ppo_fixtures import ppo_config
    from rlhf import reward_model
    from rlhf.stage import open_inputs
    from rlhf.stages import ppo

    used = []
    combine = reward_model.combine_scores
    monkeypatch.setattr(reward_model, "combine_scores", lambda s, o, c: used.append((s.shape[0], o)) or combine(s, o, c))
    config = ppo_config(tmp_path, sft_artifact, ensemble_artifact, "total_episodes=64", "rollout_batch_size=32",
                        "mini_batch_size=16", "micro_batch_size=16", "num_ppo_epochs=1", "response_length=12",
                        "checkpoint_every=0", "eval_prompts=0", "reward_ensemble.objective=worst_case")
    art = ppo.run(config, open_inputs(ppo, config))
    assert used and set(used) == {(2, "worst_case")}  # every rollout scored by both members, worst case
    history = [json.loads(line) for line in (art / "log_history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(math.isfinite(row["objective/scores"]) for row in history)


def test_combine_scores_objectives_on_known_values():
    from rlhf.reward_model import combine_scores

    scores = torch.tensor([[1.0, -1.0, 0.0], [3.0, -1.0, 2.0]])
    assert combine_scores(scores).tolist() == [2.0, -1.0, 1.0]
    assert combine_scores(scores, "worst_case").tolist() == [1.0, -1.0, 0.0]
    assert combine_scores(scores, "uncertainty_weighted", 0.5).tolist() == [1.5, -1.0, 0.5]
    with pytest.raises(ValueError, match="unknown ensemble objective"):
        combine_scores(scores, "median")
