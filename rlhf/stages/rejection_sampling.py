"""Rejection-sampling fine-tuning: SFT (TRL SFTTrainer) on the reward model's best of n samples, iterated.

Each round samples ``n`` responses per training prompt from the current policy, keeps the one the
reward artifact scores highest (best-of-n, rlhf/best_of_n.py) and fine-tunes on those prompt /
completion pairs (loss on the completion only); the next round samples from the result (Llama 2's
rejection sampling, Touvron et al. 2023, https://arxiv.org/abs/2307.09288, sec. 3.2.3; RAFT, Dong et
al. 2023, https://arxiv.org/abs/2304.06767). No explicit KL term: staying close to the SFT policy comes
from few rounds and a small learning rate; the KL is measured and reported. Resume: each finished
round's policy is kept in the work dir, and the round in progress resumes from its TRL checkpoint.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from rlhf.artifacts import LOG_HISTORY, Artifact, open_artifact, work_dir, write_artifact, write_log_history
from rlhf.best_of_n import keep_best, sample_pool
from rlhf.config import ConfigError, DataConfig, LoraConfig, option, trainer_options
from rlhf.data import train_prompts
from rlhf.evaluation.rollouts import before_after_metrics, sample_and_score
from rlhf.hardware import precision_options, process_state
from rlhf.models import load_tokenizer, peft_config, save_model
from rlhf.policies import POLICY_KINDS, TRAINING_SAMPLING, load_policy, sampling_record
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig

KIND = "rejection_sampling"
SFTOptions = trainer_options(SFTConfig, {
    "learning_rate": 1e-4, "num_train_epochs": 1, "per_device_train_batch_size": 16, "max_length": 128,
    "logging_steps": 5, "report_to": [], "lr_scheduler_type": "constant",
})


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/rejection_sampling", "where the policy artifact is written", hashed=False)
    seed: int = option(0, "seed for sampling (round r uses seed + 1000 r) and training")
    policy: str = option("${run_dir}/sft", "policy artifact to start from; also the reference for the KL metric",
                         hashed=False)
    reward_model: str = option("${run_dir}/reward", "reward artifact that picks the best of the n", hashed=False)
    n: int = option(4, "samples per prompt and round; the reward model's best is kept")
    rounds: int = option(2, "sample -> keep the best -> SFT rounds, each starting from the previous round's policy")
    lora: LoraConfig = option(LoraConfig(), "optional LoRA adapters (merged after each round)")
    data: DataConfig = option(DataConfig(), "task whose TRAINING-split prompts are sampled (held-out ones are eval's)")
    num_prompts: int = option(512, "training-split prompts sampled each round")
    num_eval_prompts: int = option(128, "training-split prompts sampled before and after for the metrics")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling of the n candidates and of the before/after samples")
    resume: bool = option(True, "continue an interrupted run: finished rounds are kept, the current one "
                          "resumes from its trainer checkpoint", hashed=False)
    train: SFTOptions = option(SFTOptions(), "trl.SFTConfig options for each round; null = TRL's default")


def inputs(config: Config) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    if config.n < 2 or config.rounds < 1:
        raise ConfigError(f"n={config.n}, rounds={config.rounds}: rejection sampling needs n >= 2 and rounds >= 1")
    return {"policy": (config.policy, POLICY_KINDS), "reward_model": (config.reward_model, "reward")}


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    device = process_state().device
    policy_path = inputs["policy"].path
    tokenizer = load_tokenizer(policy_path)
    model = load_policy(policy_path).to(device)
    reward_model = RewardModel.load(inputs["reward_model"].path, device)
    prompts = train_prompts(config.data, config.num_prompts)
    eval_prompts = train_prompts(config.data, config.num_eval_prompts)  # held-out prompts are the eval stage's
    before = sample_and_score(model, tokenizer, eval_prompts, config.sampling, config.seed, reward_model=reward_model)

    work, history, per_round = work_dir(config), [], []
    tokens, resumed = 0, False
    for r in range(config.rounds):
        round_dir = work / f"round-{r}"
        finished = round_dir / "policy"
        if config.resume and (finished / "config.json").is_file():
            model = load_policy(finished).to(device)
            resumed = True
            continue
        pool = sample_pool(model, tokenizer, prompts, config.sampling, config.seed + 1000 * r, config.n, reward_model)
        tokens += pool.num_tokens()
        best = keep_best(pool, config.n)
        args = config.train.build(output_dir=str(round_dir), seed=config.seed, save_strategy="steps", save_steps=50,
                                  save_total_limit=1, **precision_options(model))
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=peft_config(config.lora),
                             train_dataset=Dataset.from_dict({"prompt": best.prompts, "completion": best.responses}))
        has_checkpoint = config.resume and any(round_dir.glob("checkpoint-*"))
        result = trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
        model = trainer.accelerator.unwrap_model(trainer.model)
        model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        history += [{**row, "round": r} for row in trainer.state.log_history]
        per_round.append({"round": r, "rm_best_mean": best.mean("rm"), "gold_best_mean": best.mean("gold"),
                          "loss": result.training_loss, "steps": trainer.state.global_step})
        if trainer.accelerator.is_main_process:
            save_model(model, tokenizer, finished, merge=True)

    reference = load_policy(policy_path).to(device)
    after = sample_and_score(model, tokenizer, eval_prompts, config.sampling, config.seed, reference=reference,
                             reward_model=reward_model)
    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        if process_state().is_main_process:
            save_model(model, tokenizer, out.path, merge=True)
            write_log_history(out.path / LOG_HISTORY, history)
            out.extra[TRAINING_SAMPLING] = sampling_record(
                1.0, None, "supervised fine-tuning (on best-of-n samples): fits the full distribution, like SFT")
            out.extra["rounds"] = per_round  # the rounds run by this process (resumed ones are not repeated)
            out.extra["samples"] = [{"prompt": p, "sft": s, KIND: a} for p, s, a in
                                    list(zip(eval_prompts, before.responses, after.responses))[:16]]
        out.metrics.update({
            **before_after_metrics(before, after),
            "train/rounds": config.rounds,
            # Every round's n samples per prompt (each process samples every prompt); unknown (None) when
            # earlier rounds ran before a kill.
            "train/tokens_generated": None if resumed else tokens,
        })
    if process_state().is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return open_artifact(config.output_dir, KIND)
