"""Reward model: TRL RewardTrainer (Bradley-Terry loss) on the preference pairs, then calibration and normalization.

The model is a sequence classifier with one output (num_labels=1) on top of the SFT policy or any
causal-LM checkpoint. After training the stage measures held-out pairwise accuracy, a calibration
table (sigmoid of the score margin vs observed accuracy), and the raw-score mean/std on the
reference policy's samples of held-out prompts, written to normalization.json so that
``rlhf.reward_model.RewardModel.score`` gives the reference policy mean 0 / std 1 (what PPO uses).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForSequenceClassification, PreTrainedModel, set_seed
from trl import RewardConfig, RewardTrainer

from rlhf.artifacts import LOG_HISTORY, Artifact, ArtifactError, open_artifact, write_artifact, write_log_history, work_dir
from rlhf.config import ConfigError, DataConfig, LoraConfig, option, trainer_options
from rlhf.console import attach, keep_logs
from rlhf.data import train_prompts
from rlhf.evaluation.rollouts import sample_and_score
from rlhf.hardware import precision_options
from rlhf.models import fit_embeddings, is_adapter, load_causal_lm, load_sequence_classifier, load_tokenizer, peft_config, save_model
from rlhf.policies import POLICY_KINDS
from rlhf.preferences.artifact import PAIR_COLUMNS, load_pair_union, preference_inputs
from rlhf.reward_model import MEMBERS_DIR, NORMALIZATION_FILE, SCORING_FILE, RewardModel
from rlhf.sampling import SamplingConfig, join

KIND = "reward"
RewardOptions = trainer_options(RewardConfig, {
    "learning_rate": 1e-3, "num_train_epochs": 4, "per_device_train_batch_size": 32, "max_length": 128,
    "logging_steps": 5, "report_to": ["tensorboard"], "lr_scheduler_type": "cosine", "warmup_steps": 5,
})


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/reward", "where the reward model artifact is written", hashed=False)
    seed: int = option(0, "seed for the score head init, shuffling and sampling")
    preferences: str = option("${run_dir}/preferences", "preferences artifact (train/test pairs)", hashed=False)
    extra_preferences: list[str] = option(
        [], "further preferences artifacts whose pairs are added to those of `preferences`, split by split "
        "(pipelines.run --rounds: the earlier rounds' labels); each is an input recorded in the manifest", hashed=False)
    base: str = option(
        "${run_dir}/sft",
        "model the reward model starts from: a policy artifact (sft/ppo/dpo) or any causal-LM dir or hub name "
        "(e.g. 'gpt2'); a score head (num_labels=1) replaces the LM head",
    )
    reference: str = option(
        "${run_dir}/sft", "reference policy artifact whose samples define the score normalization (mean 0, std 1)",
        hashed=False)
    lora: LoraConfig = option(LoraConfig(), "optional LoRA adapters (task SEQ_CLS; the score head is trained fully)")
    data: DataConfig = option(DataConfig(), "task whose held-out prompts are used for normalization and gold correlation")
    num_eval_prompts: int = option(128, "training-split prompts sampled from the reference policy (normalization sample, gold correlation)")
    samples_per_prompt: int = option(2, "reference samples per held-out prompt")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling of the reference policy's responses")
    calibration_bins: int = option(5, "confidence bins of the calibration table (over [0.5, 1])")
    ensemble_size: int = option(
        1, "reward models trained in sequence into one artifact (member k: seed + k); PPO then combines their "
        "scores by its reward_ensemble.objective (mean, worst_case, uncertainty_weighted; Coste et al. 2024, "
        "https://arxiv.org/abs/2310.02743). 1 = a single model")
    ensemble_bootstrap: bool = option(
        True, "ensemble members 1..K-1 train on a bootstrap resample (with replacement) of the training pairs; "
        "false = every member on all pairs, only the seed differs. Member 0 always trains on all pairs")
    train: RewardOptions = option(
        RewardOptions(), "trl.RewardConfig options (its fields and transformers.TrainingArguments'); null = TRL's default")


def _is_artifact_path(config: Config, path: str) -> bool:
    """A base under run_dir or holding a manifest is an artifact (so a missing one says what to run)."""
    p = Path(path)
    return (p / "manifest.json").is_file() or p.is_relative_to(Path(config.run_dir)) and not p.is_dir()


def inputs(config: Config) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    validate(config)
    needed = {**preference_inputs(config.preferences, config.extra_preferences),
              "reference": (config.reference, POLICY_KINDS)}
    if _is_artifact_path(config, config.base):
        needed["base"] = (config.base, POLICY_KINDS)
    return needed


def load_base(path: str | Path, seed: int) -> PreTrainedModel:
    """Sequence classifier (one score) from a causal-LM checkpoint; a LoRA policy is merged first."""
    set_seed(seed)  # the new score head is randomly initialised
    if not is_adapter(path):
        return AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
    return load_sequence_classifier(path, num_labels=1).merge_and_unload()


def calibration_table(margins: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Predicted P(model's pick is the annotators' pick) = sigmoid(|margin|), binned, vs observed accuracy.

    Each pair is seen from the side the model prefers, so confidence runs from 0.5 to 1; a calibrated
    model is right in about ``mean_confidence`` of the pairs in each bin.
    """
    confidence = 1 / (1 + np.exp(-np.abs(margins)))
    correct = margins > 0
    edges = np.linspace(0.5, 1.0, bins + 1)
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        in_bin = (confidence >= lo) & ((confidence < hi) if i < bins - 1 else (confidence <= hi))
        if in_bin.any():
            rows.append({"bin": f"{lo:.2f}-{hi:.2f}", "count": int(in_bin.sum()),
                         "mean_confidence": float(confidence[in_bin].mean()),
                         "accuracy": float(correct[in_bin].mean())})
    return rows


def expected_calibration_error(rows: list[dict[str, float]]) -> float:
    total = sum(r["count"] for r in rows)
    return sum(r["count"] * abs(r["mean_confidence"] - r["accuracy"]) for r in rows) / max(total, 1)


def markdown_table(rows: list[dict[str, float]]) -> str:
    lines = ["| confidence bin | pairs | mean predicted P | observed accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['bin']} | {r['count']} | {r['mean_confidence']:.3f} | {r['accuracy']:.3f} |" for r in rows]
    return "\n".join(lines)


def validate(config: Config) -> None:
    if config.ensemble_size < 1:
        raise ConfigError(f"ensemble_size={config.ensemble_size} must be >= 1 (1 = a single reward model)")


def train_member(config: Config, base_path, pairs, member: int) -> RewardTrainer:
    """Train one reward model (ensemble member ``member``: seed + member, bootstrap pairs for member > 0)."""
    seed = config.seed + member
    tokenizer = load_tokenizer(base_path)
    model = load_base(base_path, seed)
    fit_embeddings(model, tokenizer)
    train_pairs = pairs["train"]
    if member > 0 and config.ensemble_bootstrap:
        rng = np.random.default_rng(seed)
        train_pairs = train_pairs.select(rng.integers(0, len(train_pairs), len(train_pairs)))
    work = work_dir(config) / (f"member-{member}" if member else "")
    args = config.train.build(
        output_dir=str(work), seed=seed, save_strategy="no",
        eval_strategy="epoch", per_device_eval_batch_size=64, **precision_options(model),
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=train_pairs.select_columns(PAIR_COLUMNS),
        eval_dataset=pairs["test"].select_columns(PAIR_COLUMNS), processing_class=tokenizer,
        peft_config=peft_config(config.lora, task_type="SEQ_CLS"),
    )
    attach(trainer, KIND, work / "runs")
    trainer.train()
    return trainer


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    validate(config)
    pairs = load_pair_union(inputs)
    base_path = inputs["base"].path if "base" in inputs else config.base
    trainer = train_member(config, base_path, pairs, 0)
    tokenizer, args, work = trainer.processing_class, trainer.args, work_dir(config)
    final_eval = trainer.evaluate()

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        if trainer.accelerator.is_main_process:
            save_model(trainer.model, tokenizer, out.path, merge=config.lora.merge)
            write_log_history(out.path / LOG_HISTORY, trainer.state.log_history)
            keep_logs(work / "runs", out.path)
            (out.path / SCORING_FILE).write_text(json.dumps({"max_length": args.max_length}))
            # Score through the saved artifact, exactly as PPO and eval will.
            rm = RewardModel.load(out.path, device=trainer.accelerator.device)
            margins = pair_margins(rm, pairs["test"])
            train_accuracy = float((pair_margins(rm, pairs["train"]) > 0).mean())  # beside held-out: the gap
            table = calibration_table(margins, config.calibration_bins)
            (out.path / "calibration.json").write_text(json.dumps(table, indent=2))
            out.extra["calibration_table"] = markdown_table(table)

            samples, texts = reference_samples(config, inputs["reference"], rm)
            raw = rm.raw_scores(texts)
            mean, std = float(raw.mean()), float(raw.std().clamp(min=1e-6))
            (out.path / NORMALIZATION_FILE).write_text(json.dumps({"mean": mean, "std": std}))
            correlation = float(spearmanr(raw.numpy(), samples.gold).statistic)
            (out.path / "README.md").write_text(readme(config, final_eval, table, correlation, mean, std, train_accuracy))
            out.metrics.update({
                "eval/rewards/accuracies": float((margins > 0).mean()),
                "eval/rewards/margins": float(margins.mean()),
                "eval/loss": final_eval["eval_loss"],
                "eval/calibration_error": expected_calibration_error(table),
                "eval/gold_correlation": correlation,
                "reference/raw_score_mean": mean,
                "reference/raw_score_std": std,
                "train/rewards/accuracies": train_accuracy,
                "train/loss": _last(trainer.state.log_history, "train_loss"),
                "train/steps": trainer.state.global_step,
                "train/pairs": len(pairs["train"]),
                "eval/pairs": len(pairs["test"]),
            })
        if config.ensemble_size > 1:  # every rank trains (a trainer is collective); the main process saves
            main = trainer.accelerator.is_main_process
            out.metrics.update(train_ensemble(config, base_path, pairs, out.path, texts if main else [],
                                              samples.gold if main else []))
    if trainer.accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    return open_artifact(config.output_dir, KIND)


def pair_margins(rm: RewardModel, pairs) -> np.ndarray:
    """Raw score of chosen minus rejected, per pair."""
    return (rm.raw_scores([join(p, c) for p, c in zip(pairs["prompt"], pairs["chosen"])])
            - rm.raw_scores([join(p, r) for p, r in zip(pairs["prompt"], pairs["rejected"])])).numpy()


def reference_samples(config: Config, reference: Artifact, rm: RewardModel):
    """The reference policy's samples on training-split prompts (the normalization sample) and their texts."""
    policy = load_causal_lm(reference.path).to(next(rm.model.parameters()).device)
    prompts = train_prompts(config.data, config.num_eval_prompts)  # PPO normalizes on the prompts it rolls out on
    samples = sample_and_score(policy, load_tokenizer(reference.path), prompts, config.sampling, config.seed,
                               num_samples=config.samples_per_prompt)
    del policy
    return samples, [join(p, r) for p, r in zip(samples.prompts, samples.responses)]


def train_ensemble(config: Config, base_path, pairs, path: Path, texts: list[str], gold: list[float]) -> dict:
    """Members 1..K-1 into ``path/members/<k>/``, each normalized on the reference samples ``texts``.

    Returns the ensemble's metrics: each member's held-out accuracy, the combined (mean) score's
    accuracy and gold correlation, and the members' disagreement (mean std over members) on ``texts``.
    """
    metrics, main = {}, True
    for k in range(1, config.ensemble_size):
        trainer = train_member(config, base_path, pairs, k)
        member_path = path / MEMBERS_DIR / str(k)
        main = trainer.accelerator.is_main_process
        if main:
            save_model(trainer.model, trainer.processing_class, member_path, merge=config.lora.merge)
            (member_path / SCORING_FILE).write_text(json.dumps({"max_length": trainer.args.max_length}))
            member = RewardModel.load(member_path, device=trainer.accelerator.device)
            raw = member.raw_scores(texts)
            (member_path / NORMALIZATION_FILE).write_text(
                json.dumps({"mean": float(raw.mean()), "std": float(raw.std().clamp(min=1e-6))}))
            metrics[f"eval/member_{k}/rewards/accuracies"] = float((pair_margins(member, pairs["test"]) > 0).mean())
        del trainer
    if not main:
        return metrics
    ensemble = RewardModel.load(path)
    chosen = [join(p, c) for p, c in zip(pairs["test"]["prompt"], pairs["test"]["chosen"])]
    rejected = [join(p, r) for p, r in zip(pairs["test"]["prompt"], pairs["test"]["rejected"])]
    metrics["eval/ensemble/rewards/accuracies"] = float((ensemble.score(chosen) > ensemble.score(rejected)).float().mean())
    metrics["eval/ensemble/gold_correlation"] = float(spearmanr(ensemble.score(texts).numpy(), gold).statistic)
    metrics["reference/ensemble_std"] = float(ensemble.member_scores(texts).std(0, correction=0).mean())
    metrics["ensemble_size"] = config.ensemble_size
    return metrics


def _last(log_history: list[dict], key: str) -> float | None:
    values = [entry[key] for entry in log_history if key in entry]
    return values[-1] if values else None


def readme(config: Config, final_eval: dict, table: list, correlation: float, mean: float, std: float,
           train_accuracy: float) -> str:
    return "\n".join([
        "# Reward model",
        "",
        f"Base: `{config.base}`; preferences: `{config.preferences}`; LoRA: {config.lora.enabled}.",
        "",
        f"- held-out pairwise accuracy: {final_eval.get('eval_accuracy', float('nan')):.3f} "
        f"(training pairs: {train_accuracy:.3f}; the preference export splits pairs by prompt)",
        f"- Spearman correlation with the gold reward on reference samples: {correlation:.3f}",
        f"- normalization (raw score on reference samples): mean {mean:.4f}, std {std:.4f}",
        "",
        "## Calibration (held-out pairs)",
        "",
        markdown_table(table),
        "",
    ])
