"""A small stand-in reward artifact for PPO tests (independent of the reward stage).

The SFT policy's trunk with its scalar head set by ridge regression (a linear probe) of the gold
reward (VADER) on the trunk's features of the task's texts AND of the SFT policy's own samples (a
probe fitted on the full reviews alone was easy to hack: PPO drove its score up with short
"was average." answers while the gold reward stayed flat). Normalized on the SFT policy's own samples, as the
reward stage does. Built once per SFT artifact and cached next to it, so test modules share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from rlhf.artifacts import Artifact, ArtifactError, open_artifact, write_artifact
from rlhf.config import DataConfig
from rlhf.data import load_task
from rlhf.models import load_causal_lm, load_sequence_classifier, load_tokenizer
from rlhf.reward_model import NORMALIZATION_FILE, RewardModel
from rlhf.sampling import SamplingConfig, join, sample
from rlhf.tasks.gold import gold_reward


@dataclass
class FixtureRewardConfig:
    num_examples: int = 1500  # the sft_artifact fixture's data size
    policy_samples: int = 2  # SFT samples per training prompt added to the probe's data
    ridge: float = 1e-2
    max_length: int = 64
    normalization_samples: int = 128
    seed: int = 0


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread for the tiny model: its ops are too small to split, and on 2 shared cores
    2 threads per process made generation 25x slower (spin-waiting) in our measurements."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def last_token_features(model, tokenizer, texts: list[str], max_length: int) -> torch.Tensor:
    """The hidden state the sequence-classification head reads: the last non-pad token (the appended EOS)."""
    tokenizer.padding_side = "right"
    out = []
    for start in range(0, len(texts), 128):
        enc = tokenizer([t + tokenizer.eos_token for t in texts[start : start + 128]], return_tensors="pt",
                        padding=True, truncation=True, max_length=max_length, add_special_tokens=False)
        hidden = getattr(model, model.base_model_prefix)(**enc).last_hidden_state
        last = enc["attention_mask"].sum(1) - 1
        out.append(hidden[torch.arange(len(last)), last])
    return torch.cat(out)


def build_reward_artifact(sft: Artifact, path: str | Path | None = None,
                          cfg: FixtureRewardConfig = FixtureRewardConfig()) -> Artifact:
    path = Path(path or sft.path.parent / "fixture_reward")
    try:
        return open_artifact(path, "reward")
    except ArtifactError:
        pass
    tokenizer = load_tokenizer(sft.path)
    model = load_sequence_classifier(sft.path, num_labels=1).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    data = load_task(DataConfig(num_examples=cfg.num_examples, seed=cfg.seed))["train"]
    policy = load_causal_lm(sft.path)
    prompts = list(data["prompt"])
    responses = sample(policy, tokenizer, prompts, SamplingConfig(temperature=1.0, max_new_tokens=24),
                       num_samples=cfg.policy_samples, seed=cfg.seed + 1, progress=False)
    texts = list(data["text"]) + [join(p, r) for p, rs in zip(prompts, responses) for r in rs]
    features = last_token_features(model, tokenizer, texts, cfg.max_length)
    targets = torch.tensor(gold_reward(texts))
    # GPT-2's score head has no bias: fit on centred data; the offset is removed by the normalization.
    centred = features - features.mean(0)
    gram = centred.T @ centred + cfg.ridge * torch.eye(centred.shape[1])
    weight = torch.linalg.solve(gram, centred.T @ (targets - targets.mean()))
    model.score.weight.data.copy_(weight.unsqueeze(0))

    prompts = prompts[: cfg.normalization_samples]
    responses = [r[0] for r in sample(policy, tokenizer, prompts, SamplingConfig(temperature=0.7, max_new_tokens=24),
                                      seed=cfg.seed, progress=False)]
    raw = RewardModel(model, tokenizer).raw_scores([join(p, r) for p, r in zip(prompts, responses)])
    with write_artifact(path, "reward", cfg, {"policy": sft}) as out:
        model.save_pretrained(out.path)
        tokenizer.save_pretrained(out.path)
        (out.path / NORMALIZATION_FILE).write_text(json.dumps({"mean": raw.mean().item(), "std": raw.std().item()}))
    return open_artifact(path, "reward")


# Small, fast settings on top of configs/tiny/ppo.yaml (the data subset matches the sft_artifact fixture).
TEST_OVERRIDES = ["data.num_examples=1500", "data.max_test_examples=64", "report_to=[]", "eval_prompts=32"]


def ppo_config(run_dir, sft: Artifact, reward: Artifact, *extra: str):
    from rlhf.config import load_config
    from rlhf.stages import ppo

    return load_config(ppo.Config, "configs/tiny/ppo.yaml", [
        f"run_dir={run_dir}", f"policy={sft.path}", f"reward_model={reward.path}", *TEST_OVERRIDES, *extra])


def state_dict_diff(path_a: str | Path, path_b: str | Path) -> float:
    """Largest absolute difference between the weights of two saved policies."""
    a, b = load_causal_lm(path_a).state_dict(), load_causal_lm(path_b).state_dict()
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# Deterministic rollouts (greedy, fixed length) so 1 and 2 processes see the same global batch;
# one minibatch per epoch so its gradient is the same mean whatever the split into micro-batches.
DISTRIBUTED_OVERRIDES = [
    "do_sample=false", "stop_token=null", "total_episodes=48", "rollout_batch_size=16",
    "mini_batch_size=16", "micro_batch_size=4", "num_ppo_epochs=2", "response_length=16",
    "checkpoint_every=0", "lr_scheduler_type=constant", "eval_prompts=0",
]


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])


def distributed_worker(run_dir: str, sft_path: str, reward_path: str, result_path: str) -> None:
    """Run under ``torchrun``: PPO, checking after each step that all ranks hold the same weights."""
    from rlhf.artifacts import open_artifact
    from rlhf.stage import open_inputs
    from rlhf.stages import ppo

    config = ppo_config(run_dir, open_artifact(sft_path), open_artifact(reward_path), *DISTRIBUTED_OVERRIDES)
    rank_diffs = []

    def compare_ranks(step, trainer):
        params = flat_parameters(trainer.accelerator.unwrap_model(trainer.model))
        gathered = trainer.accelerator.gather(params.unsqueeze(0))
        rank_diffs.append((gathered - gathered[0]).abs().max().item())

    ppo.run(config, open_inputs(ppo, config), on_step_end=compare_ranks)
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        Path(result_path).write_text(json.dumps({"world_size": state.num_processes, "rank_diffs": rank_diffs}))


if __name__ == "__main__":
    import sys

    distributed_worker(*sys.argv[1:5])
