"""Simulated preference artifacts for tests: policy samples ordered by the gold reward.

Until real annotations exist, a "preferences" artifact is built the way simulated annotators would:
sample a few responses per prompt from a policy, pair them (all pairs, or best vs worst) by gold
reward (VADER), and let ``num_annotators`` noisy annotators vote on the pair's direction (each flips it with
probability ``noise``). The majority direction decides chosen/rejected; ``agreement`` is the
fraction of annotators that agree with it. Reused by the reward, DPO, PPO and eval tests.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict

from rlhf.artifacts import Artifact, open_artifact, write_artifact
from rlhf.config import DataConfig
from rlhf.data import load_task
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.preferences.artifact import KIND
from rlhf.sampling import SamplingConfig, join, sample
from rlhf.tasks.gold import gold_reward


@dataclass
class SimulatedPreferencesConfig:
    """Recorded in the manifest so the artifact fingerprint reflects how it was made."""

    num_prompts: int
    num_test_prompts: int
    candidates_per_prompt: int
    num_annotators: int
    all_pairs: bool
    min_gap: float
    noise: float
    seed: int
    max_new_tokens: int


def _candidate_pairs(gold: list[float], all_pairs: bool, min_gap: float) -> list[tuple[int, int]]:
    """(better, worse) index pairs by gold reward: best vs worst, or every pair (as InstructGPT's K-choose-2).

    Pairs closer than ``min_gap`` in gold reward are dropped: annotators would call them a tie.
    """
    order = sorted(range(len(gold)), key=gold.__getitem__, reverse=True)
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]] if all_pairs else [(order[0], order[-1])]
    return [(a, b) for a, b in pairs if gold[a] - gold[b] >= max(min_gap, 1e-9)]


def _pairs(prompts, responses, cfg: SimulatedPreferencesConfig, rng: random.Random, prefix: str) -> list[dict]:
    rows = []
    for i, (prompt, candidates) in enumerate(zip(prompts, responses)):
        gold = gold_reward(join(prompt, c) for c in candidates)
        for better, worse in _candidate_pairs(gold, cfg.all_pairs, cfg.min_gap):
            votes = [rng.random() >= cfg.noise for _ in range(cfg.num_annotators)]  # True = agrees with gold
            majority = sum(votes) * 2 > len(votes)
            chosen, rejected = (better, worse) if majority else (worse, better)
            rows.append({
                "prompt_id": f"{prefix}-{i}",
                "prompt": prompt,
                "chosen": candidates[chosen],
                "rejected": candidates[rejected],
                "annotators": [f"sim-{a}" for a in range(cfg.num_annotators)],
                "agreement": sum(v == majority for v in votes) / len(votes),
            })
    return rows


def make_preferences_artifact(
    sft_artifact: Artifact, out_dir: str | Path, num_prompts: int = 256, num_test_prompts: int = 64,
    candidates_per_prompt: int = 4, num_annotators: int = 3, noise: float = 0.0, all_pairs: bool = True,
    min_gap: float = 0.2, seed: int = 0, max_new_tokens: int = 32,
) -> Artifact:
    """A "preferences" artifact (train/test splits) from ``sft_artifact``'s samples ordered by gold reward.

    Train pairs use prompts from the task's train split, test pairs prompts from its test split;
    ``all_pairs`` pairs every two candidates of a train prompt, otherwise only its best and worst
    (test prompts always give their best-vs-worst pair); pairs less than ``min_gap`` apart in gold
    reward are left out as ties.
    """
    cfg = SimulatedPreferencesConfig(num_prompts, num_test_prompts, candidates_per_prompt, num_annotators,
                                     all_pairs, min_gap, noise, seed, max_new_tokens)
    task = load_task(DataConfig(num_examples=max(1000, 4 * num_prompts), max_test_examples=None, seed=seed))
    model, tokenizer = load_causal_lm(sft_artifact.path), load_tokenizer(sft_artifact.path)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens)
    rng = random.Random(seed)
    splits = {}
    for split, n in (("train", num_prompts), ("test", num_test_prompts)):
        prompts = [task[split]["prompt"][i % len(task[split])] for i in range(n)]
        responses = sample(model, tokenizer, prompts, sampling, num_samples=candidates_per_prompt,
                           seed=seed + (split == "test"), progress=False)
        # Test pairs: each held-out prompt's clearest pair (best vs worst), one per prompt.
        split_cfg = cfg if split == "train" else dataclasses.replace(cfg, all_pairs=False)
        splits[split] = Dataset.from_list(_pairs(prompts, responses, split_cfg, rng, split))
    with write_artifact(out_dir, KIND, cfg, {"policy": sft_artifact}) as out:
        DatasetDict(splits).save_to_disk(str(out.path / "data"))
        out.metrics.update({f"{split}/pairs": len(ds) for split, ds in splits.items()})
    return open_artifact(out_dir, KIND)


# The reward stage's test settings, shared by the reward tests and PPO's trained-reward-model test.
TASK = ["data.num_examples=1500", "data.max_test_examples=64"]


def reward_config(tmp_path, sft_artifact, preferences_artifact, *extra):
    from rlhf.config import load_config
    from rlhf.stages import reward

    return load_config(reward.Config, "configs/tiny/reward.yaml", [
        f"run_dir={tmp_path}", f"base={sft_artifact.path}", f"reference={sft_artifact.path}",
        f"preferences={preferences_artifact.path}", "num_eval_prompts=64", *TASK, *extra,
    ])
