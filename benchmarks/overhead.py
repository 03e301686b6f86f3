"""Framework overhead of the TRL-backed stages (SFT, reward, DPO) on the embedded tiny GPT-2.

For each stage, the same model, data and number of steps are trained four ways:
  stage      our stage (python -m pipelines.<stage>), timing its trainer.train()
  trl        the TRL trainer called directly with the same hyper-parameters and fp32
  trl-deflt  the TRL trainer with TRL's own defaults (bf16 + gradient checkpointing)
  torch      a plain torch loop (AdamW, forward/backward/step) over the same collated batches
and the per-step times and ratios are printed. Targets: stage/trl <= 1.05, stage/torch <= 1.3.

    python benchmarks/overhead.py [--steps 30] [--stages sft,reward,dpo]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, set_seed
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from rlhf.artifacts import write_artifact
from rlhf.config import load_config
from rlhf.models import load_tokenizer
from rlhf.stage import run_stage
from rlhf.stages import dpo, reward, sft
from rlhf.tasks.reviews import generate_reviews

BATCH = 16
LR = 5e-4


def train_seconds_per_step(trainer, steps: int) -> float:
    result = trainer.train()
    return result.metrics["train_runtime"] / steps


def stage_seconds_per_step(artifact, steps: int) -> float:
    rows = [json.loads(line) for line in (artifact.path / "log_history.jsonl").read_text().splitlines()]
    runtime = next(r["train/runtime"] for r in rows if "train/runtime" in r)
    return runtime / steps


def torch_seconds_per_step(model, batches, loss_fn, steps: int) -> float:
    """The baseline: the same batches through a hand-written AdamW loop."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    loss_fn(model, batches[0]).backward()  # warm-up step, not timed (the trainers' first step is timed)
    optimizer.zero_grad()
    start = time.perf_counter()
    for step in range(steps):
        loss = loss_fn(model, batches[step % len(batches)])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def common_args(out: Path, steps: int) -> dict:
    return dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
                logging_steps=steps, save_strategy="no", report_to=[], disable_tqdm=True, seed=0)


def fp32(**kwargs) -> dict:
    return dict(bf16=False, fp16=False, activation_checkpointing=False, **kwargs)


def trl_defaults(**kwargs) -> dict:
    return dict(use_cpu=not torch.cuda.is_available(), **kwargs)  # TRL's bf16 + checkpointing defaults stay


def first_batches(trainer, n: int) -> list[dict]:
    batches = []
    for batch in trainer.get_train_dataloader():
        batches.append({k: v for k, v in batch.items() if isinstance(v, torch.Tensor)})
        if len(batches) == n:
            break
    return batches


def preference_pairs(n: int) -> Dataset:
    """Positive-vs-negative continuations of the same opening: prompt / chosen / rejected."""
    reviews = generate_reviews(2 * n, seed=1)
    pos = [r for r in reviews if r["label"] == "positive"]
    neg = [r for r in reviews if r["label"] == "negative"]
    return Dataset.from_list([
        {"prompt": p["prompt"], "chosen": p["text"][len(p["prompt"]):], "rejected": q["text"][len(q["prompt"]):]}
        for p, q in zip(pos, neg)
    ])


def make_run(root: Path, steps: int):
    """A run dir with a small SFT policy and a preferences artifact, for the reward and DPO stages."""
    cfg = load_config(sft.Config, "configs/tiny/sft.yaml", [f"run_dir={root}", "train.max_steps=5", "train.report_to=[]",
                                                          "data.num_examples=600", "num_samples=1"])
    policy = run_stage(sft, cfg, log=lambda _: None)
    pairs = preference_pairs(BATCH * steps)
    data = DatasetDict(train=pairs, test=pairs.select(range(32)))
    data = data.map(lambda _: {"prompt_id": "x", "annotators": ["bench"], "agreement": 1.0})
    with write_artifact(root / "preferences", "preferences", cfg) as out:
        data.save_to_disk(str(out.path / "data"))
    return policy, data


def inputs_from(policy) -> list[str]:
    """The shared run made by make_run: its preferences sit beside its SFT policy."""
    return [f"preferences={policy.path.parent / 'preferences'}"]


def bench_sft(root: Path, steps: int) -> dict[str, float]:
    overrides = [f"run_dir={root}/sft_bench", f"train.max_steps={steps}", f"train.per_device_train_batch_size={BATCH}",
                 f"train.learning_rate={LR}", "train.report_to=[]", "train.lr_scheduler_type=constant",
                 "train.warmup_steps=0", "num_samples=1", "train.eval_strategy=no"]
    art = run_stage(sft, load_config(sft.Config, "configs/tiny/sft.yaml", overrides), log=lambda _: None)
    tokenizer = load_tokenizer(art.path)
    texts = Dataset.from_list(generate_reviews(BATCH * steps, seed=0)).select_columns(["text"])
    fresh = lambda: AutoModelForCausalLM.from_config(AutoModelForCausalLM.from_pretrained(art.path).config)  # noqa: E731
    times = {"stage": stage_seconds_per_step(art, steps)}
    for name, args in (("trl", fp32()), ("trl-deflt", trl_defaults())):
        set_seed(0)
        trainer = SFTTrainer(model=fresh(), args=SFTConfig(**common_args(root / name, steps), max_length=64, **args),
                             train_dataset=texts, processing_class=tokenizer)
        times[name] = train_seconds_per_step(trainer, steps)
    set_seed(0)
    trainer = SFTTrainer(model=fresh(), args=SFTConfig(**common_args(root / "b", steps), max_length=64, **fp32()),
                         train_dataset=texts, processing_class=tokenizer)
    times["torch"] = torch_seconds_per_step(fresh(), first_batches(trainer, steps),
                                            lambda m, b: m(**b).loss, steps)
    return times


def bench_reward(root: Path, steps: int, policy, data) -> dict[str, float]:
    overrides = [f"run_dir={root}", *inputs_from(policy), f"base={policy.path}", f"reference={policy.path}",
                 f"train.max_steps={steps}", f"train.per_device_train_batch_size={BATCH}",
                 f"train.learning_rate={LR}", "train.lr_scheduler_type=constant", "train.warmup_steps=0",
                 "train.eval_strategy=no", "num_eval_prompts=4", "samples_per_prompt=1"]
    art = run_stage(reward, load_config(reward.Config, "configs/tiny/reward.yaml", overrides), log=lambda _: None)
    tokenizer = load_tokenizer(policy.path)
    fresh = lambda: AutoModelForSequenceClassification.from_pretrained(policy.path, num_labels=1)  # noqa: E731
    pairs = data["train"].select_columns(["prompt", "chosen", "rejected"])
    times = {"stage": stage_seconds_per_step(art, steps)}
    for name, args in (("trl", fp32()), ("trl-deflt", trl_defaults())):
        set_seed(0)
        trainer = RewardTrainer(model=fresh(), args=RewardConfig(**common_args(root / name, steps), max_length=128, **args),
                                train_dataset=pairs, processing_class=tokenizer)
        times[name] = train_seconds_per_step(trainer, steps)

    def bradley_terry(model, batch):
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
        chosen, rejected = scores.chunk(2)  # RewardTrainer's collator stacks chosen then rejected
        return -torch.nn.functional.logsigmoid(chosen - rejected).mean()

    set_seed(0)
    trainer = RewardTrainer(model=fresh(), args=RewardConfig(**common_args(root / "b", steps), max_length=128, **fp32()),
                            train_dataset=pairs, processing_class=tokenizer)
    times["torch"] = torch_seconds_per_step(fresh(), first_batches(trainer, steps), bradley_terry, steps)
    return times


def bench_dpo(root: Path, steps: int, policy, data) -> dict[str, float]:
    overrides = [f"run_dir={root}", *inputs_from(policy), f"policy={policy.path}",
                 f"train.max_steps={steps}", f"train.per_device_train_batch_size={BATCH}",
                 f"train.learning_rate={LR}", "train.lr_scheduler_type=constant", "train.warmup_steps=0",
                 "train.eval_strategy=no"]
    art = run_stage(dpo, load_config(dpo.Config, "configs/tiny/dpo.yaml", overrides), log=lambda _: None)
    tokenizer = load_tokenizer(policy.path)
    fresh = lambda: AutoModelForCausalLM.from_pretrained(policy.path)  # noqa: E731
    pairs = data["train"].select_columns(["prompt", "chosen", "rejected"])
    times = {"stage": stage_seconds_per_step(art, steps)}
    for name, args in (("trl", fp32()), ("trl-deflt", trl_defaults())):
        set_seed(0)
        trainer = DPOTrainer(model=fresh(), args=DPOConfig(**common_args(root / name, steps), max_length=128, **args),
                             train_dataset=pairs, processing_class=tokenizer)
        times[name] = train_seconds_per_step(trainer, steps)
    reference = fresh().eval().requires_grad_(False)

    def dpo_loss(model, batch, beta=0.1):
        def logps(m):
            logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            mask = batch["completion_mask"][:, 1:].float()
            token = torch.gather(logits.log_softmax(-1), 2, batch["input_ids"][:, 1:, None])[..., 0]
            return (token * mask).sum(-1)

        with torch.no_grad():
            ref = logps(reference)
        margin = logps(model) - ref
        chosen, rejected = margin.chunk(2)
        return -torch.nn.functional.logsigmoid(beta * (chosen - rejected)).mean()

    set_seed(0)
    trainer = DPOTrainer(model=fresh(), args=DPOConfig(**common_args(root / "b", steps), max_length=128, **fp32()),
                         train_dataset=pairs, processing_class=tokenizer)
    times["torch"] = torch_seconds_per_step(fresh(), first_batches(trainer, steps), dpo_loss, steps)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--stages", default="sft,reward,dpo")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per column (this CPU is noisy)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, threads: {torch.get_num_threads()}, "
          f"steps: {args.steps}, batch: {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stages = args.stages.split(",")
        policy, data = make_run(root, args.steps) if {"reward", "dpo"} & set(stages) else (None, None)
        print(f"{'stage':<8} {'ours s/step':>11} {'TRL fp32':>9} {'TRL deflt':>9} {'torch':>8} "
              f"{'ours/TRL':>9} {'ours/torch':>10} {'deflt/ours':>10}")
        for name in stages:
            fn = {"sft": bench_sft, "reward": bench_reward, "dpo": bench_dpo}[name]
            runs = []
            for repeat in range(args.repeats):
                run_root = root / f"{name}-{repeat}"
                run_root.mkdir()
                runs.append(fn(run_root, args.steps) if name == "sft" else fn(run_root, args.steps, policy, data))
            t = {key: min(r[key] for r in runs) for key in runs[0]}
            print(f"{name:<8} {t['stage']:11.3f} {t['trl']:9.3f} {t['trl-deflt']:9.3f} {t['torch']:8.3f} "
                  f"{t['stage'] / t['trl']:9.2f} {t['stage'] / t['torch']:10.2f} {t['trl-deflt'] / t['stage']:10.1f}")


if __name__ == "__main__":
    main()
