"""Direct Preference Optimization (TRL DPOTrainer) of the SFT policy on the preference pairs.

DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) fits the policy to the pairs directly,
with the SFT policy as the frozen reference: a second copy for full fine-tuning, or - with LoRA -
the same weights with the adapter disabled, so no second model is held. ``beta`` and ``loss_type``
(sigmoid, ipo, hinge, ...) pass through ``train:`` to DPOConfig. After training the stage samples
held-out prompts from the SFT and the DPO policy with the same seed and reports the gold reward of
both, and the KL of the DPO policy from the reference on its own samples.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from typing import Callable

from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer

from rlhf.artifacts import LOG_HISTORY, Artifact, open_artifact, write_artifact, write_log_history, work_dir
from rlhf.config import DataConfig, LoraConfig, option, trainer_options
from rlhf.console import attach, keep_logs
from rlhf.data import train_prompts
from rlhf.evaluation.rollouts import sample_and_score
from rlhf.hardware import precision_options, process_state
from rlhf.models import load_tokenizer, peft_config, save_model
from rlhf.policies import POLICY_KINDS, reference_input, TRAINING_SAMPLING, load_policy, sampling_record
from rlhf.preferences.artifact import KIND as PREFERENCES, PAIR_COLUMNS, load_pairs
from rlhf.sampling import SamplingConfig
from rlhf.tasks.reviews import well_formed_rate

KIND = "dpo"
DPOOptions = trainer_options(DPOConfig, {
    "learning_rate": 5e-4, "num_train_epochs": 2, "per_device_train_batch_size": 32, "beta": 0.1,
    "loss_type": ["sigmoid"], "max_length": 128, "logging_steps": 5, "report_to": ["tensorboard"],
    "lr_scheduler_type": "cosine", "warmup_steps": 5,
})


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/dpo", "where the DPO policy artifact is written", hashed=False)
    seed: int = option(0, "seed for shuffling and for the before/after samples (the same for both)")
    policy: str = option("${run_dir}/sft", "policy artifact to start from; also the frozen reference", hashed=False)
    reference: str | None = option(
        None, "frozen reference policy artifact when it is not the starting policy (null = policy); pipelines.run "
        "--rounds sets it to the SFT policy while later rounds start from the previous round's policy", hashed=False)
    preferences: str = option("${run_dir}/preferences", "preferences artifact (train/test pairs)", hashed=False)
    lora: LoraConfig = option(LoraConfig(), "optional LoRA adapters; the reference is then the adapter-disabled model")
    data: DataConfig = option(DataConfig(), "task whose held-out prompts are sampled for the gold-reward comparison")
    num_eval_prompts: int = option(128, "training-split prompts sampled from the SFT and the DPO policy (the held-out ones are the eval stage's)")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling for the before/after comparison")
    train: DPOOptions = option(
        DPOOptions(), "trl.DPOConfig options (e.g. beta, loss_type: sigmoid/ipo/hinge/..., any TrainingArguments "
        "field); null = TRL's default")


def inputs(config: Config) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    return {"policy": (config.policy, POLICY_KINDS), "preferences": (config.preferences, PREFERENCES),
            **reference_input(config.reference, config.lora.enabled)}


def reference_of(trainer: DPOTrainer):
    """The frozen reference and the context to use it in: TRL's ref_model, or the policy with its adapter off."""
    if trainer.ref_model is not None:
        return trainer.ref_model, contextlib.nullcontext
    return trainer.model, trainer.model.disable_adapter


class OnStepEnd(TrainerCallback):
    """Calls ``hook(step, trainer)`` after every optimizer step (the frontier sweep scores snapshots)."""

    def __init__(self, hook: Callable[[int, DPOTrainer], None], trainer: DPOTrainer):
        self.hook, self.trainer = hook, trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.hook(state.global_step, self.trainer)


def run(config: Config, inputs: dict[str, Artifact],
        on_step_end: Callable[[int, DPOTrainer], None] | None = None) -> Artifact:
    """``on_step_end(step, trainer)`` runs after each optimizer step (``trainer.state.max_steps`` in all)."""
    pairs = load_pairs(inputs["preferences"])
    policy_path = inputs["policy"].path
    tokenizer = load_tokenizer(policy_path)
    model = load_policy(policy_path)
    # Without LoRA the reference is a second frozen copy; with LoRA, TRL disables the adapter instead.
    ref_model = None if config.lora.enabled else load_policy(inputs.get("reference", inputs["policy"]).path)

    # The SFT policy's samples, taken before training with the seed the DPO samples will use.
    model.to(process_state().device)
    prompts = train_prompts(config.data, config.num_eval_prompts)  # test prompts are for the eval stage only
    sft = sample_and_score(model, tokenizer, prompts, config.sampling, config.seed)

    work = work_dir(config)
    args = config.train.build(
        output_dir=str(work), seed=config.seed, save_strategy="no",
        eval_strategy="epoch", per_device_eval_batch_size=64, **precision_options(model),
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref_model, args=args, train_dataset=pairs["train"].select_columns(PAIR_COLUMNS),
        eval_dataset=pairs["test"].select_columns(PAIR_COLUMNS), processing_class=tokenizer,
        peft_config=peft_config(config.lora),
    )
    attach(trainer, KIND, work / "runs")
    if on_step_end is not None:
        trainer.add_callback(OnStepEnd(on_step_end, trainer))
    train_output = trainer.train()
    final_eval = trainer.evaluate()

    policy = trainer.model
    reference, reference_context = reference_of(trainer)
    # Exact KL to the reference on the DPO policy's own sampled tokens (rlhf.logprobs).
    dpo = sample_and_score(policy, tokenizer, prompts, config.sampling, config.seed, reference=reference,
                           reference_context=reference_context)
    gold_sft, gold_dpo = sft.mean("gold"), dpo.mean("gold")

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        out.extra[TRAINING_SAMPLING] = sampling_record(
            1.0, None, "the DPO loss uses the log-probs of whole responses at temperature 1")
        if trainer.accelerator.is_main_process:
            save_model(policy, tokenizer, out.path, merge=config.lora.merge)
            write_log_history(out.path / LOG_HISTORY, trainer.state.log_history)
            keep_logs(work / "runs", out.path)
            out.extra["reference_model"] = (
                "adapter-disabled policy (no copy)" if trainer.ref_model is None else "separate frozen copy"
            )
            out.extra["samples"] = [
                {"prompt": p, "sft": s, "dpo": d} for p, s, d in list(zip(prompts, sft.responses, dpo.responses))[:16]
            ]
        train_logs = [e for e in trainer.state.log_history if "loss" in e]
        last = train_logs[-1] if train_logs else {}
        out.metrics.update({
            "train/loss": last.get("loss"),
            "train/loss_mean": train_output.training_loss,
            "train/rewards/accuracies": last.get("rewards/accuracies"),
            "train/rewards/margins": last.get("rewards/margins"),
            "eval/loss": final_eval["eval_loss"],
            "eval/rewards/accuracies": final_eval["eval_rewards/accuracies"],
            "eval/rewards/margins": final_eval["eval_rewards/margins"],
            "eval/gold_reward": gold_dpo,
            "eval/gold_reward_sft": gold_sft,
            "eval/gold_reward_gain": gold_dpo - gold_sft,
            "objective/kl": dpo.mean("kl"),
            "eval/well_formed": well_formed_rate(dpo.responses),
            "eval/well_formed_sft": well_formed_rate(sft.responses),
            "train/steps": trainer.state.global_step,
            "train/pairs": len(pairs["train"]),
        })
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return open_artifact(config.output_dir, KIND)
