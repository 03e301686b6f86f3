"""RLOO (TRL RLOOTrainer) of the SFT policy on the reward artifact's normalised score.

REINFORCE Leave-One-Out (Ahmadian et al. 2024, https://arxiv.org/abs/2402.14740): ``num_generations``
completions per prompt, each one's baseline the mean reward of the others; no value model. The KL
to the SFT reference is ``train.beta`` (TRL's default 0.05; kept > 0 so the policy stays near the
distribution the reward model was trained on). Shared wiring: ``rlhf.online``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import RLOOConfig, RLOOTrainer

from rlhf.artifacts import Artifact
from rlhf.config import option, trainer_options
from rlhf.online import OnlineConfig, inputs, train_online  # noqa: F401 (inputs is this stage's)

KIND = "rloo"
RLOOOptions = trainer_options(RLOOConfig, {
    "learning_rate": 3e-5, "num_train_epochs": 1, "per_device_train_batch_size": 16, "num_generations": 4,
    "beta": 0.05, "logging_steps": 5, "report_to": [], "lr_scheduler_type": "constant",
})


@dataclass
class Config(OnlineConfig):
    output_dir: str = option("${run_dir}/rloo", "where the RLOO policy artifact is written", hashed=False)
    train: RLOOOptions = option(
        RLOOOptions(), "trl.RLOOConfig options (beta = KL coefficient to the SFT reference, num_generations = "
        "completions per prompt, any TrainingArguments field); null = TRL's default")


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    return train_online(KIND, RLOOTrainer, config, inputs, length_key="max_completion_length")
