"""PPO stage behaviour on the embedded task: it learns, resumes exactly, and stops safely on NaN."""

from __future__ import annotations

import json

import pytest
import torch

from ppo_fixtures import build_reward_artifact, ppo_config, single_thread, state_dict_diff  # noqa: F401 (single_thread is autouse)
from rlhf.artifacts import ArtifactError, open_artifact
from rlhf.data import held_out_prompts
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.ppo import core
from rlhf.ppo.checkpoint import checkpoint_step
from rlhf.ppo.trainer import PPODivergedError
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig, join, sample
from rlhf.stage import open_inputs
from rlhf.stages import ppo
from rlhf.tasks.gold import gold_reward

# Measured (docs/stages/ppo.md): held-out gold reward SFT 0.21 -> PPO 0.56 here (0.08 -> 0.79 with
# other samples), objective/kl <= ~5 nats; the test asks for under a third of that gain.
MIN_GOLD_GAIN = 0.1
MAX_KL = 15.0


@pytest.fixture(scope="module")
def reward_artifact(sft_artifact):
    return build_reward_artifact(sft_artifact)


def run_ppo(config, on_step_end=None):
    return ppo.run(config, open_inputs(ppo, config), on_step_end=on_step_end)


def mean_gold(path, prompts, temperature, seed=0) -> float:
    model, tokenizer = load_causal_lm(path), load_tokenizer(path)
    responses = sample(model, tokenizer, prompts, SamplingConfig(temperature=temperature, max_new_tokens=24), num_samples=2,
                       seed=seed, progress=False)
    return sum(gold_reward(join(p, r) for p, rs in zip(prompts, responses) for r in rs)) / (2 * len(prompts))


@pytest.mark.slow
@pytest.mark.parametrize("reward_fixture", [
    "reward_artifact",          # a probe fitted to the gold reward (fast, tests/ppo_fixtures.py)
    "trained_reward_artifact",  # the real chain: the reward stage trained on simulated preferences
])
def test_ppo_raises_gold_reward_with_bounded_kl(tmp_path, sft_artifact, reward_fixture, request):
    config = ppo_config(tmp_path, sft_artifact, request.getfixturevalue(reward_fixture))
    artifact = run_ppo(config)

    prompts = held_out_prompts(config.data, 64)
    # Both at the temperature PPO trained at (the artifact records it for the eval stage).
    assert artifact.manifest["training_sampling"]["temperature"] == config.temperature
    before, after = (mean_gold(path, prompts, config.temperature) for path in (sft_artifact.path, artifact.path))
    print(f"{reward_fixture}: held-out gold reward sft {before:.3f} -> ppo {after:.3f}; metrics {artifact.metrics}")
    assert after - before > MIN_GOLD_GAIN
    history = [json.loads(line) for line in (artifact.path / "log_history.jsonl").read_text().splitlines()]
    assert len(history) == config.total_episodes // config.rollout_batch_size
    # Step 1 samples from the reference itself: the k1 estimate is exactly 0. After that it is a batch
    # mean of log pi/ref on sampled tokens: unbiased, but slightly negative by chance while the true KL
    # is still ~0.01 (step 2 logged -0.02 once), so only a clearly negative value is a bug.
    assert history[0]["objective/kl"] == pytest.approx(0.0, abs=1e-6)
    assert all(-0.1 < row["objective/kl"] < MAX_KL for row in history[1:])
    assert history[-1]["objective/scores"] > history[0]["objective/scores"]
    assert artifact.metrics["eval/score"] > artifact.metrics["eval/score_initial"]
    assert not (artifact.path / "adapter_config.json").exists()  # a plain policy, loadable as any causal LM


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, sft_artifact, reward_artifact):
    overrides = ["total_episodes=128", "rollout_batch_size=32", "mini_batch_size=16",
                 "micro_batch_size=8", "num_ppo_epochs=2", "checkpoint_every=2", "eval_prompts=0"]
    straight = run_ppo(ppo_config(tmp_path / "a", sft_artifact, reward_artifact, *overrides))

    class Killed(Exception):
        pass

    def kill_after_step_2(step, trainer):
        if step == 2:
            raise Killed

    config = ppo_config(tmp_path / "b", sft_artifact, reward_artifact, *overrides)
    with pytest.raises(Killed):
        run_ppo(config, on_step_end=kill_after_step_2)
    with pytest.raises(ArtifactError):
        open_artifact(config.output_dir, "ppo")
    assert checkpoint_step(ppo.work_dir(config)) == 2
    resumed = run_ppo(config)  # resume=true is the default

    assert state_dict_diff(straight.path, resumed.path) < 1e-6
    logs = [(p / "log_history.jsonl").read_text().splitlines() for p in (straight.path, resumed.path)]
    assert len(logs[0]) == len(logs[1]) == 4
    keys = ("objective/scores", "objective/kl", "loss/policy_avg")
    for a, b in zip(*logs):
        a, b = json.loads(a), json.loads(b)
        assert [a[k] for k in keys] == pytest.approx([b[k] for k in keys], abs=1e-5)


def nan_from_second_call(fn):
    """Wrap ``fn`` so that its result is NaN from the second call (= PPO step 2 with one micro-batch) on."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        out = fn(*args, **kwargs)
        if calls["n"] < 2:
            return out
        if isinstance(out, torch.Tensor):
            return out * float("nan")
        out.loss = out.loss * float("nan")
        return out

    return wrapped


@pytest.mark.parametrize("broken, message", [
    ("score", "non-finite reward-model score at PPO step 2"),
    ("loss", "non-finite loss/gradient at PPO step 2"),
])
def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, sft_artifact, reward_artifact, monkeypatch, broken, message):
    config = ppo_config(tmp_path, sft_artifact, reward_artifact, "total_episodes=96", "rollout_batch_size=32",
                        "mini_batch_size=32", "micro_batch_size=32", "num_ppo_epochs=1",
                        "checkpoint_every=1", "eval_prompts=0")
    if broken == "score":
        monkeypatch.setattr(RewardModel, "score", nan_from_second_call(RewardModel.score))
    else:
        monkeypatch.setattr(core, "policy_loss", nan_from_second_call(core.policy_loss))
    with pytest.raises(PPODivergedError, match=message + r".*checkpoint \(step 1\)"):
        run_ppo(config)
    assert checkpoint_step(ppo.work_dir(config)) == 1
    state = torch.load(ppo.work_dir(config) / "checkpoint" / "state.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    with pytest.raises(ArtifactError):
        open_artifact(config.output_dir, "ppo")


def test_lora_uses_the_disabled_adapter_as_reference_and_saves_a_merged_policy(tmp_path, sft_artifact, reward_artifact):
    config = ppo_config(tmp_path, sft_artifact, reward_artifact, "lora.enabled=true", "learning_rate=1e-3",
                        "total_episodes=64", "rollout_batch_size=32", "eval_prompts=0")
    artifact = run_ppo(config)
    history = [json.loads(line) for line in (artifact.path / "log_history.jsonl").read_text().splitlines()]
    # Adapters start as the identity: policy == reference. The rollout log-probs come from the sampler's
    # KV-cached pass, the reference's from a full forward: equal to float rounding, not bit for bit.
    assert abs(history[0]["objective/kl"]) < 1e-5
    assert abs(history[1]["objective/kl"]) > 1e-3
    assert not (artifact.path / "adapter_config.json").exists()
    assert state_dict_diff(sft_artifact.path, artifact.path) > 0


def test_separate_critic_and_target_kl_early_stop(tmp_path, sft_artifact, reward_artifact):
    config = ppo_config(tmp_path, sft_artifact, reward_artifact, "value_model=separate", "target_kl=1e-4",
                        "kl_estimator=k3", "adaptive_kl=true", "total_episodes=64",
                        "rollout_batch_size=32", "eval_prompts=0")
    artifact = run_ppo(config)
    history = [json.loads(line) for line in (artifact.path / "log_history.jsonl").read_text().splitlines()]
    assert all(row["policy/epochs"] < config.num_ppo_epochs for row in history)
    assert history[1]["objective/kl"] >= 0  # k3 is never negative
    assert history[1]["objective/kl_coef"] != config.kl_coef  # the adaptive controller moved it
