"""Supervised fine-tuning of the policy (TRL SFTTrainer), optionally with LoRA."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from trl import SFTConfig, SFTTrainer

from rlhf.artifacts import Artifact, open_artifact, write_artifact, write_log_history, work_dir
from rlhf.config import DataConfig, LoraConfig, ModelConfig, option, trainer_options
from rlhf.console import attach, keep_logs
from rlhf.data import held_out_prompts, load_task
from rlhf.evaluation.rollouts import sample_and_score
from rlhf.hardware import precision_options
from rlhf.models import build_tiny_gpt2, fit_embeddings, load_causal_lm, load_tokenizer, peft_config, save_model, set_dropout
from rlhf.policies import TRAINING_SAMPLING, sampling_record
from rlhf.sampling import SamplingConfig
from rlhf.tokenizer import train_tokenizer

KIND = "sft"
SFTOptions = trainer_options(SFTConfig, {
    "learning_rate": 1e-3, "num_train_epochs": 2, "per_device_train_batch_size": 32, "max_length": 64,
    "logging_steps": 10, "report_to": ["tensorboard"], "lr_scheduler_type": "cosine", "warmup_steps": 10,
})


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/sft", "where the SFT model artifact is written", hashed=False)
    seed: int = option(0, "seed for model init, shuffling and sampling")
    model: ModelConfig = option(ModelConfig(), "the base model")
    data: DataConfig = option(DataConfig(), "the training corpus")
    lora: LoraConfig = option(LoraConfig(), "optional LoRA adapters")
    resume: bool = option(True, "continue from the last trainer checkpoint of an interrupted run", hashed=False)
    num_samples: int = option(16, "held-out prompts sampled after training, stored in the manifest")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling for the post-training samples")
    train: SFTOptions = option(
        SFTOptions(), "trl.SFTConfig options (its fields and transformers.TrainingArguments'); null = TRL's default")


def inputs(config: Config) -> dict[str, tuple[str, str]]:
    return {}


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    data = load_task(config.data)
    if config.model.name_or_path == "embedded":
        tokenizer = train_tokenizer(data["train"]["text"], config.model.tiny.vocab_size)
        model = build_tiny_gpt2(config.model, tokenizer)
    else:
        tokenizer = load_tokenizer(config.model.name_or_path)
        model = load_causal_lm(config.model.name_or_path)
    fit_embeddings(model, tokenizer)
    set_dropout(model, config.model.dropout)

    work = work_dir(config)
    args = config.train.build(
        output_dir=str(work), seed=config.seed, save_strategy="steps",
        save_steps=200, save_total_limit=1, eval_strategy="epoch", per_device_eval_batch_size=64,
        dataset_text_field="text", **precision_options(model),
    )
    # Language modelling on the full text; the extra columns would make TRL treat it as prompt/completion.
    lm_data = data.select_columns(["text"])
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=lm_data["train"], eval_dataset=lm_data["test"],
        processing_class=tokenizer, peft_config=peft_config(config.lora),
    )
    attach(trainer, KIND, work / "runs")
    initial_eval_loss = trainer.evaluate()["eval_loss"]
    has_checkpoint = config.resume and any(work.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    final_eval_loss = trainer.evaluate()["eval_loss"]

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        out.extra[TRAINING_SAMPLING] = sampling_record(
            1.0, None, "maximum likelihood on whole texts: fitted at the model's own distribution, temperature 1")
        if trainer.accelerator.is_main_process:
            save_model(trainer.model, tokenizer, out.path, merge=config.lora.merge)
            write_log_history(out.path / "log_history.jsonl", trainer.state.log_history)
            keep_logs(work / "runs", out.path)
            samples = sample_and_score(trainer.model, tokenizer, held_out_prompts(config.data, config.num_samples),
                                       config.sampling, config.seed, progress=True)
            out.extra["samples"] = [{"prompt": p, "response": r, "gold_reward": g}
                                    for p, r, g in zip(samples.prompts, samples.responses, samples.gold)]
        out.metrics.update({
            "eval/loss_initial": initial_eval_loss,
            "eval/loss": final_eval_loss,
            "eval/perplexity": math.exp(min(final_eval_loss, 50)),
            "train/steps": trainer.state.global_step,
            "train/examples": len(data["train"]),
        })
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)  # the artifact is complete; checkpoints are no longer needed
    return open_artifact(config.output_dir, KIND)
