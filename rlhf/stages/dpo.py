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
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from trl import DPOConfig, DPOTrainer

from rlhf.artifacts import LOG_HISTORY, Artifact, open_artifact, write_artifact, write_log_history
from rlhf.config import DataConfig, LoraConfig, option, trainer_args
from rlhf.console import attach, keep_logs
from rlhf.data import held_out_prompts
from rlhf.hardware import precision_options
from rlhf.logprobs import response_log_softmax
from rlhf.models import load_causal_lm, load_tokenizer, peft_config, save_model
from rlhf.sampling import SamplingConfig, encode_prompts, join, sample
from rlhf.stages.reward import PAIR_COLUMNS, POLICY_KINDS, load_pairs
from rlhf.tasks.gold import gold_reward

KIND = "dpo"


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run")
    output_dir: str = option("${run_dir}/dpo", "where the DPO policy artifact is written")
    seed: int = option(0, "seed for shuffling and for the before/after samples (the same for both)")
    policy: str = option("${run_dir}/sft", "policy artifact to start from; also the frozen reference")
    preferences: str = option("${run_dir}/preferences", "preferences artifact (train/test pairs)")
    lora: LoraConfig = option(LoraConfig(), "optional LoRA adapters; the reference is then the adapter-disabled model")
    data: DataConfig = option(DataConfig(), "task whose held-out prompts are sampled for the gold-reward comparison")
    num_eval_prompts: int = option(128, "held-out prompts sampled from the SFT and the DPO policy")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling for the before/after comparison")
    train: dict[str, Any] = option(
        {"learning_rate": 5e-4, "num_train_epochs": 2, "per_device_train_batch_size": 32, "beta": 0.1,
         "loss_type": ["sigmoid"], "max_length": 128, "logging_steps": 5, "report_to": [],
         "lr_scheduler_type": "cosine", "warmup_steps": 5},
        "options passed to trl.DPOConfig (e.g. beta, loss_type: sigmoid/ipo/hinge/..., any TrainingArguments field)",
    )


def inputs(config: Config) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    return {"policy": (config.policy, POLICY_KINDS), "preferences": (config.preferences, "preferences")}


def work_dir(config: Config) -> Path:
    return Path(config.run_dir) / ".work" / Path(config.output_dir).name


def load_policy(path: str | Path):
    """The policy's full weights; a LoRA policy artifact is merged so a new adapter can go on top."""
    model = load_causal_lm(path)
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def reference_of(trainer: DPOTrainer):
    """The frozen reference and the context to use it in: TRL's ref_model, or the policy with its adapter off."""
    if trainer.ref_model is not None:
        return trainer.ref_model, contextlib.nullcontext
    return trainer.model, trainer.model.disable_adapter


@torch.no_grad()
def response_kl(policy, reference, reference_context, tokenizer, prompts: list[str], responses: list[str],
                temperature: float = 1.0, batch_size: int = 32) -> torch.Tensor:
    """KL(policy || reference) of each response: the exact per-token KL summed over the response tokens.

    Contexts are the policy's own samples, so the mean over samples estimates the sequence-level KL.
    Responses are re-tokenized from text (the sampler returns text), without the final EOS.
    """
    device = next(policy.parameters()).device
    policy.eval()
    out = []
    for start in range(0, len(prompts), batch_size):
        enc = encode_prompts(tokenizer, prompts[start : start + batch_size], device)
        tokenizer.padding_side = "right"
        resp = tokenizer(responses[start : start + batch_size], return_tensors="pt", padding=True,
                         add_special_tokens=False).to(device)
        if resp["input_ids"].shape[1] == 0:
            out.append(torch.zeros(len(resp["input_ids"])))
            continue
        ids = torch.cat([enc["input_ids"], resp["input_ids"]], 1)
        mask = torch.cat([enc["attention_mask"], resp["attention_mask"]], 1)
        width = enc["input_ids"].shape[1]
        logp = response_log_softmax(policy, ids, mask, width, temperature)
        with reference_context():
            logq = response_log_softmax(reference, ids, mask, width, temperature)
        per_token = (logp.exp() * (logp - logq)).sum(-1)
        out.append((per_token * resp["attention_mask"]).sum(-1).cpu())
    return torch.cat(out)


def mean_gold(prompts: list[str], responses: list[str]) -> float:
    rewards = gold_reward(join(p, r) for p, r in zip(prompts, responses))
    return sum(rewards) / max(len(rewards), 1)


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    pairs = load_pairs(inputs["preferences"])
    policy_path = inputs["policy"].path
    tokenizer = load_tokenizer(policy_path)
    model = load_policy(policy_path)
    # Without LoRA the reference is a second frozen copy; with LoRA, TRL disables the adapter instead.
    ref_model = None if config.lora.enabled else load_policy(policy_path)

    # The SFT policy's samples, taken before training with the seed the DPO samples will use.
    model.to(PartialState().device)
    prompts = held_out_prompts(config.data, config.num_eval_prompts)
    sft_responses = [r[0] for r in sample(model, tokenizer, prompts, config.sampling, seed=config.seed, progress=False)]

    work = work_dir(config)
    args = trainer_args(
        DPOConfig, config.train, output_dir=str(work), seed=config.seed, save_strategy="no",
        eval_strategy="epoch", per_device_eval_batch_size=64, **precision_options(model),
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref_model, args=args, train_dataset=pairs["train"].select_columns(PAIR_COLUMNS),
        eval_dataset=pairs["test"].select_columns(PAIR_COLUMNS), processing_class=tokenizer,
        peft_config=peft_config(config.lora),
    )
    attach(trainer, KIND, work / "runs")
    train_output = trainer.train()
    final_eval = trainer.evaluate()

    policy = trainer.model
    dpo_responses = [r[0] for r in sample(policy, tokenizer, prompts, config.sampling, seed=config.seed, progress=False)]
    reference, reference_context = reference_of(trainer)
    kl = response_kl(policy, reference, reference_context, tokenizer, prompts, dpo_responses,
                     config.sampling.temperature)
    gold_sft, gold_dpo = mean_gold(prompts, sft_responses), mean_gold(prompts, dpo_responses)

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        if trainer.accelerator.is_main_process:
            save_model(policy, tokenizer, out.path, merge=config.lora.merge)
            write_log_history(out.path / LOG_HISTORY, trainer.state.log_history)
            keep_logs(work / "runs", out.path)
            out.extra["reference_model"] = (
                "adapter-disabled policy (no copy)" if trainer.ref_model is None else "separate frozen copy"
            )
            out.extra["samples"] = [
                {"prompt": p, "sft": s, "dpo": d} for p, s, d in list(zip(prompts, sft_responses, dpo_responses))[:16]
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
            "objective/kl": float(kl.mean()),
            "train/steps": trainer.state.global_step,
            "train/pairs": len(pairs["train"]),
        })
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return open_artifact(config.output_dir, KIND)
