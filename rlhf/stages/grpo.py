"""GRPO (TRL GRPOTrainer) of the SFT policy on the reward artifact's normalised score.

Group Relative Policy Optimization (Shao et al. 2024, https://arxiv.org/abs/2402.03300):
``num_generations`` completions per prompt, advantages standardised within each group; no value
model. TRL's default ``beta`` is 0 (no reference model, as DeepSeek-R1 trained against verifiable
rewards); a learned reward model is easy to over-optimise (Gao et al. 2022,
https://arxiv.org/abs/2210.10760), so our recipes set beta > 0: the KL penalty to the SFT policy keeps
the policy where the reward model is trustworthy. Shared wiring: ``rlhf.online``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig, GRPOTrainer

from rlhf.artifacts import Artifact
from rlhf.config import option, trainer_options
from rlhf.online import OnlineConfig, inputs, train_online  # noqa: F401 (inputs is this stage's)

KIND = "grpo"
GRPOOptions = trainer_options(GRPOConfig, {
    "learning_rate": 3e-5, "num_train_epochs": 1, "per_device_train_batch_size": 16, "num_generations": 4,
    "beta": 0.05, "logging_steps": 5, "report_to": [], "lr_scheduler_type": "constant",
})


@dataclass
class Config(OnlineConfig):
    output_dir: str = option("${run_dir}/grpo", "where the GRPO policy artifact is written", hashed=False)
    train: GRPOOptions = option(
        GRPOOptions(), "trl.GRPOConfig options (beta = KL coefficient to the SFT reference, > 0 here although "
        "TRL's default is 0: a learned reward model needs the KL leash; num_generations = group size); "
        "null = TRL's default")


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    return train_online(KIND, GRPOTrainer, config, inputs, length_key="max_completion_length")
