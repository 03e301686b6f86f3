"""Best-of-n: draw n samples from a policy, keep the one the reward model scores highest.

A ``best_of_n`` artifact (written by ``python -m pipelines.best_of_n``) records the base policy,
the reward artifact and n in ``best_of_n.json`` (and a copy of the tokenizer); the eval stage
samples it like any policy. Its KL to the base policy is not computed per sample: we report the
analytic bound ``log n - (n-1)/n`` (Beirami et al. 2024, https://arxiv.org/abs/2401.01879; an
upper bound on KL(best-of-n || base), tight for large n when the best sample is unique).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rlhf.evaluation.rollouts import PolicySamples, sample_and_score
from rlhf.logprobs import best_of_n_kl_bound
from rlhf.policies import load_policy
from rlhf.reward_model import EnsembleObjective, RewardModel
from rlhf.sampling import SamplingConfig

BEST_OF_N_FILE = "best_of_n.json"
KL_NOTE = "kl, kl_k1, kl_k3: the bound log n - (n-1)/n (Beirami et al. 2024), not a per-sample estimate"


def keep_best(samples: PolicySamples, n: int) -> PolicySamples:
    """Per prompt (n consecutive rows with RM scores), the row with the highest RM score."""
    return samples.select([max(range(start, start + n), key=samples.rm.__getitem__)
                           for start in range(0, len(samples.rm), n)])


def sample_pool(policy, tokenizer, prompts: list[str], sampling: SamplingConfig, seed: int, n: int,
                reward_model: RewardModel) -> PolicySamples:
    """n samples per prompt (consecutive rows), each with gold reward and RM score."""
    return sample_and_score(policy, tokenizer, prompts, sampling, seed, num_samples=n, reward_model=reward_model)


def sample_best_of_n(policy, tokenizer, prompts: list[str], sampling: SamplingConfig, seed: int, n: int,
                     reward_model: RewardModel) -> PolicySamples:
    """One best-of-n response per prompt, with gold reward and RM score; kl/kl_k1/kl_k3 hold the bound."""
    best = keep_best(sample_pool(policy, tokenizer, prompts, sampling, seed, n, reward_model), n)
    best.kl = best.kl_k1 = best.kl_k3 = [best_of_n_kl_bound(n)] * len(best.prompts)
    return best


def write_recipe(path: str | Path, policy: str | Path, reward_model: str | Path, n: int,
                 reward_ensemble: EnsembleObjective | None = None) -> None:
    (Path(path) / BEST_OF_N_FILE).write_text(json.dumps(
        {"policy": str(Path(policy).resolve()), "reward_model": str(Path(reward_model).resolve()), "n": n,
         "reward_ensemble": asdict(reward_ensemble or EnsembleObjective())}))


def sample_artifact(path: str | Path, tokenizer, prompts: list[str], sampling: SamplingConfig, seed: int,
                    device="cpu") -> PolicySamples:
    """Sample a best_of_n artifact: its base policy, n per prompt, the recorded reward model's best."""
    recipe = json.loads((Path(path) / BEST_OF_N_FILE).read_text())
    policy = load_policy(recipe["policy"]).to(device).eval()
    # an ensemble reward artifact picks by the recorded objective (recipes from before it was recorded: the mean)
    reward_model = RewardModel.load(recipe["reward_model"], device, EnsembleObjective(**recipe.get("reward_ensemble", {})))
    return sample_best_of_n(policy, tokenizer, prompts, sampling, seed, recipe["n"], reward_model)
