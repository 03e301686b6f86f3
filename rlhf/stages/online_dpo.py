"""Online DPO (TRL's experimental OnlineDPOTrainer) of the SFT policy, the reward artifact as the judge.

Online AI feedback (Guo et al. 2024, https://arxiv.org/abs/2402.04792): each step samples two
completions per prompt from the current policy, the reward artifact's normalised score picks the
chosen one, and the DPO loss (``train.beta``, KL-regularised to the SFT reference) is applied to
that fresh pair. The trainer lives in ``trl.experimental`` in TRL 1.16: its API may change between
TRL releases. Shared wiring: ``rlhf.online``.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

from rlhf.artifacts import Artifact
from rlhf.config import option, trainer_options
from rlhf.online import OnlineConfig, inputs, train_online  # noqa: F401 (inputs is this stage's)

KIND = "online_dpo"
OnlineDPOOptions = trainer_options(OnlineDPOConfig, {
    "learning_rate": 5e-5, "num_train_epochs": 1, "per_device_train_batch_size": 16, "beta": [0.1],
    "max_length": 128, "logging_steps": 5, "report_to": [], "lr_scheduler_type": "constant",
})


@dataclass
class Config(OnlineConfig):
    output_dir: str = option("${run_dir}/online_dpo", "where the online-DPO policy artifact is written", hashed=False)
    train: OnlineDPOOptions = option(
        OnlineDPOOptions(), "trl.experimental.online_dpo.OnlineDPOConfig options (beta = DPO's KL coefficient "
        "to the SFT reference, one value or one per epoch; loss_type sigmoid/ipo); null = TRL's default")


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    return train_online(KIND, OnlineDPOTrainer, config, inputs, length_key="max_new_tokens")
