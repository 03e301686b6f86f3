"""Online training against the reward artifact: the shared body of the RLOO, GRPO and online-DPO stages.

Each of those stages is TRL's trainer with: the SFT policy as the start and as the frozen KL
reference (beta > 0), the reward artifact's normalised score of ``prompt + completion`` as the
reward, prompts from the task's training split only, ``sampling`` as the trainer's generation
settings (so the temperature used in training is the one recorded in the manifest), TRL's
checkpoint resume from the stage's work dir, and the same before/after metrics as the DPO stage.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset

from rlhf.artifacts import LOG_HISTORY, Artifact, open_artifact, work_dir, write_artifact, write_log_history
from rlhf.config import ConfigError, DataConfig, LoraConfig, option
from rlhf.data import train_prompts
from rlhf.evaluation.rollouts import before_after_metrics, sample_and_score
from rlhf.hardware import precision_options, process_state
from rlhf.models import load_tokenizer, peft_config, save_model
from rlhf.policies import POLICY_KINDS, TRAINING_SAMPLING, load_policy, sampling_record
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig, join


@dataclass
class OnlineConfig:
    """Fields every online stage shares; each stage adds ``output_dir`` and its typed ``train`` section."""

    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    seed: int = option(0, "seed for the trainer and for the before/after samples (the same for both)")
    policy: str = option("${run_dir}/sft", "policy artifact to start from; also the frozen KL reference", hashed=False)
    reward_model: str = option("${run_dir}/reward", "reward artifact whose normalised score is the reward", hashed=False)
    lora: LoraConfig = option(LoraConfig(), "optional LoRA adapters; the reference is then the adapter-disabled model")
    data: DataConfig = option(DataConfig(), "task whose TRAINING-split prompts are sampled (held-out ones are eval's)")
    num_prompts: int = option(512, "training-split prompts the trainer samples from (cycled over epochs)")
    num_eval_prompts: int = option(128, "training-split prompts sampled before and after training for the metrics")
    sampling: SamplingConfig = option(
        SamplingConfig(), "generation in training (temperature, top_p, top_k, max_new_tokens become the trainer's "
        "options; set them here, not under train:) and for the before/after samples")
    resume: bool = option(True, "continue from the last trainer checkpoint of an interrupted run", hashed=False)


def inputs(config: OnlineConfig) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    return {"policy": (config.policy, POLICY_KINDS), "reward_model": (config.reward_model, "reward")}


class RewardFunction:
    """A TRL reward function: the reward artifact's normalised score of each prompt + completion.

    It sees every completion the trainer generates, so it also counts their tokens (``completion_ids``:
    up to and including EOS) on this process."""

    __name__ = "reward_model"  # TRL logs rewards/<name>/mean

    def __init__(self, reward_model: RewardModel):
        self.reward_model = reward_model
        self.tokens_generated = 0

    def __call__(self, prompts: list[str], completions: list[str], completion_ids: list[list[int]] | None = None,
                 **_: Any) -> list[float]:
        self.tokens_generated += sum(len(ids) for ids in completion_ids or [])
        return self.reward_model.score([join(p, c) for p, c in zip(prompts, completions)]).tolist()


def generation_options(config: OnlineConfig, length_key: str) -> dict[str, Any]:
    """The trainer's generation settings from ``sampling``; ``train:`` may not set them a second way."""
    s = config.sampling
    wanted = {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, length_key: s.max_new_tokens}
    for key, value in wanted.items():
        given = getattr(config.train, key)
        if given is not None and given != value:
            sampling_key = "max_new_tokens" if key == length_key else key
            raise ConfigError(f"train.{key}={given} differs from sampling.{sampling_key}={value}: "
                              f"set sampling.{sampling_key} only (it drives training and the metrics)")
    return wanted


def train_online(kind: str, trainer_cls: type, config: Any, inputs: dict[str, Artifact], length_key: str,
                 fixed: dict[str, Any] | None = None, **trainer_kwargs: Any) -> Artifact:
    """Train ``trainer_cls`` on the reward artifact and write a ``kind`` policy artifact (see the module doc)."""
    generation = generation_options(config, length_key)
    policy_path = inputs["policy"].path
    tokenizer = load_tokenizer(policy_path)
    model = load_policy(policy_path).to(process_state().device)
    reward_model = RewardModel.load(inputs["reward_model"].path, process_state().device)
    eval_prompts = train_prompts(config.data, config.num_eval_prompts)  # held-out prompts are the eval stage's
    before = sample_and_score(model, tokenizer, eval_prompts, config.sampling, config.seed, reward_model=reward_model)

    work = work_dir(config)
    args = config.train.build(output_dir=str(work), seed=config.seed, save_strategy="steps", save_steps=50,
                              save_total_limit=1, **(fixed or {}), **generation, **precision_options(model))
    prompts = Dataset.from_dict({"prompt": train_prompts(config.data, config.num_prompts)})
    reward_function = RewardFunction(reward_model)
    trainer = trainer_cls(model=model, reward_funcs=reward_function, args=args, train_dataset=prompts,
                          processing_class=tokenizer, peft_config=peft_config(config.lora), **trainer_kwargs)
    has_checkpoint = config.resume and any(work.glob("checkpoint-*"))
    train_output = trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    tokens = trainer.accelerator.reduce(torch.tensor(reward_function.tokens_generated, device=trainer.accelerator.device),
                                        reduction="sum").item()

    policy = trainer.accelerator.unwrap_model(trainer.model)
    # Exact KL on the trained policy's own samples, to the SFT policy (its disabled adapter under LoRA).
    if hasattr(policy, "peft_config"):
        reference, context = policy, policy.disable_adapter
    else:
        reference, context = load_policy(policy_path).to(process_state().device), contextlib.nullcontext
    after = sample_and_score(policy, tokenizer, eval_prompts, config.sampling, config.seed, reference=reference,
                             reference_context=context, reward_model=reward_model)

    with write_artifact(config.output_dir, kind, config, inputs) as out:
        if trainer.accelerator.is_main_process:
            save_model(policy, tokenizer, out.path, merge=config.lora.merge)
            write_log_history(out.path / LOG_HISTORY, trainer.state.log_history)
            out.extra[TRAINING_SAMPLING] = {
                **sampling_record(config.sampling.temperature, config.sampling.max_new_tokens,
                                  f"{kind} trainer's generation settings (sampling.*)"),
                "trainer": {key: getattr(args, key) for key in generation}}
            out.extra["samples"] = [{"prompt": p, "sft": s, kind: a} for p, s, a in
                                    list(zip(eval_prompts, before.responses, after.responses))[:16]]
        logs = [e for e in trainer.state.log_history if "loss" in e]
        last = logs[-1] if logs else {}
        out.metrics.update({f"train/{key}": value for key, value in last.items()
                            if isinstance(value, (int, float)) and key not in ("epoch", "step")})
        out.metrics.update({
            "train/loss_mean": train_output.training_loss,
            **before_after_metrics(before, after),
            "train/steps": trainer.state.global_step,
            "train/prompts": len(prompts),
            # Counted since this process started: a resumed run's count would miss the tokens before the kill.
            "train/tokens_generated": None if has_checkpoint else tokens,
        })
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)  # the artifact is complete; checkpoints are no longer needed
    return open_artifact(config.output_dir, kind)
