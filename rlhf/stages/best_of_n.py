"""Best-of-n as a policy: a ``best_of_n`` artifact naming a base policy, the reward artifact and n.

No training: the artifact records what to sample (rlhf/best_of_n.py) so the eval stage can compare
best-of-n with trained policies; this stage also reports its gold reward and RM score on training
prompts, and the analytic KL bound log n - (n-1)/n (Beirami et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass


from rlhf.hardware import process_state
from rlhf.artifacts import Artifact, open_artifact, write_artifact
from rlhf.best_of_n import sample_best_of_n, write_recipe
from rlhf.logprobs import best_of_n_kl_bound
from rlhf.config import ConfigError, DataConfig, option
from rlhf.data import train_prompts
from rlhf.models import load_tokenizer
from rlhf.policies import BEST_OF_N, POLICY_KINDS, TRAINING_SAMPLING, load_policy, sampling_record
from rlhf.reward_model import EnsembleObjective, RewardModel
from rlhf.sampling import SamplingConfig

KIND = BEST_OF_N


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/best_of_n", "where the best_of_n artifact is written", hashed=False)
    policy: str = option("${run_dir}/sft", "policy artifact to sample n times per prompt", hashed=False)
    reward_model: str = option("${run_dir}/reward", "reward artifact that picks the best of the n", hashed=False)
    reward_ensemble: EnsembleObjective = option(
        EnsembleObjective(), "how the members of an ensemble reward artifact (reward stage ensemble_size > 1) score "
        "the n samples: mean, worst_case or uncertainty_weighted (Coste et al. 2024)")
    n: int = option(4, "samples per prompt; KL to the policy is at most log n - (n-1)/n nats")
    seed: int = option(0, "seed for the stage's own metrics")
    data: DataConfig = option(DataConfig(), "task whose training-split prompts give the stage's metrics")
    num_eval_prompts: int = option(64, "training-split prompts sampled for the stage's metrics")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling for the stage's metrics (eval uses its own)")


def inputs(config: Config) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    if config.n < 1:
        raise ConfigError(f"n={config.n}: best-of-n needs at least one sample per prompt, e.g. n=4")
    return {"policy": (config.policy, POLICY_KINDS), "reward_model": (config.reward_model, "reward")}


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    device = process_state().device
    tokenizer = load_tokenizer(inputs["policy"].path)
    policy = load_policy(inputs["policy"].path).to(device)
    reward_model = RewardModel.load(inputs["reward_model"].path, device, config.reward_ensemble)
    samples = sample_best_of_n(policy, tokenizer, train_prompts(config.data, config.num_eval_prompts),
                               config.sampling, config.seed, config.n, reward_model)
    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        tokenizer.save_pretrained(str(out.path))  # the eval stage checks every policy's vocabulary
        write_recipe(out.path, inputs["policy"].path, inputs["reward_model"].path, config.n, config.reward_ensemble)
        out.extra[TRAINING_SAMPLING] = sampling_record(
            config.sampling.temperature, config.sampling.max_new_tokens, "the setting its n samples were drawn at here")
        out.metrics.update({"eval/gold_reward": samples.mean("gold"), "eval/rm_score": samples.mean("rm"),
                            "objective/kl_bound": best_of_n_kl_bound(config.n), "n": config.n})
    return open_artifact(config.output_dir, KIND)
