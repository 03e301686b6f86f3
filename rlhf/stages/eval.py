"""Evaluate policies on held-out prompts: gold reward, RM score, KL to the reference, diversity,
well-formedness, win rate.

Every policy is sampled on the same prompts with the same seeds at ONE declared setting
(``sampling``), whatever each was trained at; a policy whose manifest says it was optimised at
another temperature is flagged, and ``also_own_setting`` adds a second table with each such policy
at its own training setting (issue 12, "equal footing"). The report (report.md, plots,
metrics.json, samples.jsonl) is written into an "eval" artifact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from rlhf.artifacts import PRODUCERS, Artifact, ArtifactError, LOG_HISTORY, open_artifact, write_artifact
from rlhf.config import ConfigError, DataConfig, option
from rlhf.data import check_held_out, held_out_prompts, split_summary, train_prompts
from rlhf.evaluation.generalization import train_vs_held_out
from rlhf.evaluation.metrics import (Estimate, bootstrap_interval, distinct_n, repeated_ngram_rate, t_interval,
                                     win_outcomes)
from rlhf.evaluation.plots import curve, frontier_plot, read_log_history, training_curves_plot
from rlhf.evaluation.report import render_report
from rlhf.evaluation.rollouts import PolicySamples, sample_and_score
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf import best_of_n
from rlhf.policies import BEST_OF_N, POLICY_KINDS, SAMPLED_POLICY_KINDS, training_sampling
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig
from rlhf.tasks.reviews import is_well_formed

KIND = "eval"


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/eval", "where the eval artifact (report.md, plots, metrics) is written",
                            hashed=False)
    policies: dict[str, str | None] = option(
        {"sft": "${run_dir}/sft", "ppo": "${run_dir}/ppo", "dpo": "${run_dir}/dpo"},
        "name -> policy artifact (sft/ppo/dpo/rloo/grpo/online_dpo/rejection_sampling/best_of_n) to evaluate; every one listed must exist. Leave one out "
        "with policies.<name>=null, add one with policies.<name>=<path>", hashed=False,
    )
    reference: str = option(
        "${run_dir}/sft", "reference policy (the SFT model): KL is measured against it, win rates against its samples",
        hashed=False,
    )
    reward_model: str | None = option(
        "${run_dir}/reward", "reward artifact for the normalized RM score; null or '' skips the RM score", hashed=False,
    )
    seed: int = option(0, "sampling seed, the same for every policy (batch b uses seed + b)")
    data: DataConfig = option(DataConfig(), "the task; its held-out split gives the prompts")
    num_prompts: int = option(128, "held-out prompts to evaluate (one sample per prompt and policy), at least 2")
    sampling: SamplingConfig = option(
        SamplingConfig(), "temperature sampling; top_p/top_k must stay off so KL is measured on the "
        "distribution actually sampled. batch_size also sets the log-prob batch. Every policy in the main "
        "table is sampled at this one setting (default temperature 1.0, what SFT and DPO optimise)",
    )
    also_own_setting: bool = option(
        False, "also sample every policy whose manifest records another training setting (training_sampling: "
        "temperature, response length; e.g. PPO at 0.7) at that setting, reported in a separate table with KL and "
        "win rate (vs the reference at the same setting) measured there",
    )
    confidence: float = option(0.95, "confidence level of the intervals")
    bootstrap_resamples: int = option(2000, "bootstrap resamples for the win-rate interval")
    samples_in_report: int = option(8, "prompts shown in the report's sample table (all are in samples.jsonl)")
    curve_metrics: list[str] = option(
        ["objective/scores", "objective/rlhf_reward", "rewards/margins", "rewards/accuracies"],
        "log_history.jsonl metrics drawn over training steps (a train/ prefix is also accepted)",
    )


def _policies(config: Config) -> dict[str, str]:
    return {name: path for name, path in config.policies.items() if path}


def validate(config: Config) -> None:
    if not _policies(config):
        raise ConfigError("no policies to evaluate: set policies.<name>=<artifact dir>, e.g. policies.sft=runs/tiny/sft")
    if config.num_prompts < 2:
        raise ConfigError(f"num_prompts={config.num_prompts}: confidence intervals need at least 2 prompts")
    if not 0 < config.confidence < 1:
        raise ConfigError(f"confidence={config.confidence} must be between 0 and 1, e.g. confidence=0.95")
    if config.sampling.temperature <= 0:
        raise ConfigError(f"sampling.temperature={config.sampling.temperature} must be > 0")
    if config.sampling.top_p != 1.0 or config.sampling.top_k != 0:
        raise ConfigError(
            "eval samples with plain temperature sampling so the KL terms refer to the sampled distribution: "
            "set sampling.top_p=1.0 sampling.top_k=0"
        )


def inputs(config: Config) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    validate(config)
    specs: dict[str, tuple[str, str | tuple[str, ...]]] = {"reference": (config.reference, POLICY_KINDS)}
    for name, path in _policies(config).items():
        if not Path(path).exists():
            producer = PRODUCERS.get(name, "the stage that trains it")
            raise ConfigError(
                f"policy '{name}': no artifact at {path}. Run {producer} first, point policies.{name} at it, "
                f"or leave it out with policies.{name}=null"
            )
        specs[f"policy/{name}"] = (path, SAMPLED_POLICY_KINDS)
    if config.reward_model:
        if not Path(config.reward_model).exists():
            raise ConfigError(
                f"reward model: no artifact at {config.reward_model}. Run {PRODUCERS['reward']} first, "
                "or skip the RM score with reward_model=null"
            )
        specs["reward_model"] = (config.reward_model, "reward")
    return specs


def _vocab_error(name: str, policy: Artifact, reference: Artifact, problem: str) -> ArtifactError:
    return ArtifactError(
        f"policy '{name}' ({policy.path}) does not share the reference's vocabulary ({reference.path}): {problem}. "
        "Evaluate policies trained from the reference SFT model, or set reference= to the model this policy came from"
    )


def _check_tokenizer(name: str, policy: Artifact, reference: Artifact, ref_tokenizer) -> None:
    """Per-token KL compares distributions over one vocabulary: the policy must share the reference's."""
    tokenizer = load_tokenizer(policy.path)
    if tokenizer.get_vocab() != ref_tokenizer.get_vocab():
        raise _vocab_error(name, policy, reference,
                           f"tokenizer vocabularies differ ({len(tokenizer)} vs {len(ref_tokenizer)} tokens)")


def own_setting(trained: dict | None, sampling: SamplingConfig) -> SamplingConfig | None:
    """A policy's own training setting (its manifest's record) as a SamplingConfig; None if it is ``sampling``
    or unknown. A record without a response length (trained on whole texts) keeps the eval's limit."""
    if trained is None:
        return None
    own = replace(sampling, temperature=trained["temperature"],
                  max_new_tokens=trained.get("max_new_tokens") or sampling.max_new_tokens)
    return None if own == sampling else own


def _footing(trained: dict | None, sampling: SamplingConfig) -> dict:
    """How the eval setting relates to the policy's training setting: the report flags any mismatch."""
    return {"training_sampling": trained,
            "same_temperature": None if trained is None else trained["temperature"] == sampling.temperature}


def _summary(samples: PolicySamples, baseline_gold: list[float], config: Config) -> dict:
    ci = lambda values: t_interval(values, config.confidence).as_dict()  # noqa: E731
    return {
        "well_formed": ci([float(is_well_formed(r)) for r in samples.responses]),
        "repeated_3grams": ci([repeated_ngram_rate(r, 3) for r in samples.responses]),
        "gold_reward": ci(samples.gold),
        "rm_score": ci(samples.rm) if samples.rm is not None else None,
        "kl": ci(samples.kl),
        "kl_k1": ci(samples.kl_k1),
        "kl_k3": ci(samples.kl_k3),
        "response_length": ci(samples.lengths),
        "distinct_1": distinct_n(samples.responses, 1),
        "distinct_2": distinct_n(samples.responses, 2),
        "win_rate": bootstrap_interval(win_outcomes(samples.gold, baseline_gold), config.confidence,
                                       config.bootstrap_resamples, config.seed).as_dict(),
    }


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prompts = held_out_prompts(config.data, config.num_prompts)
    if len(prompts) < 2:
        raise ConfigError(f"the held-out split has {len(prompts)} prompts; at least 2 are needed (check data.*)")
    check_held_out(config.data, prompts, inputs)  # no input artifact may have trained on them
    ref_art = inputs["reference"]
    tokenizer = load_tokenizer(ref_art.path)
    policies = {name: inputs[f"policy/{name}"] for name in _policies(config)}
    for name, art in policies.items():  # fail before any sampling
        _check_tokenizer(name, art, ref_art, tokenizer)
    reference = load_causal_lm(ref_art.path).to(device).eval()
    reward_model = RewardModel.load(inputs["reward_model"].path, device) if "reward_model" in inputs else None

    # Samples are cached by (artifact fingerprint, setting): an artifact with identical content
    # (e.g. policies.sft = the reference) is sampled, and its weights loaded, only once per setting.
    sampled: dict[tuple, PolicySamples] = {}

    def sample(name: str, art: Artifact, setting: SamplingConfig) -> PolicySamples:
        key = (art.fingerprint, setting.temperature, setting.max_new_tokens)
        if key not in sampled:
            if art.kind == BEST_OF_N:  # no weights of its own: n samples of its base policy, the RM's best kept
                sampled[key] = best_of_n.sample_artifact(art.path, tokenizer, prompts, setting, config.seed, device)
            else:
                model = reference if art is ref_art else _load_policy(name, art, ref_art, reference, device)
                sampled[key] = sample_and_score(model, tokenizer, prompts, setting, config.seed, reference=reference,
                                                reward_model=reward_model)
        return sampled[key]

    # The baseline for win rates: the reference's own samples under the same seeds and setting (its
    # KL to itself is computed like any policy's).
    baseline = sample("reference", ref_art, config.sampling)
    held_out_scores = {"reference": {"gold": baseline.gold, "rm": baseline.rm}}

    metrics: dict = {
        "reference": {"path": str(ref_art.path), "fingerprint": ref_art.fingerprint},
        "reward_model": str(inputs["reward_model"].path) if reward_model else None,
        "num_prompts": len(prompts), "seed": config.seed, "confidence": config.confidence,
        "sampling": asdict(config.sampling), "policies": {}, "data_split": split_summary(config.data),
    }
    rows, histories = [], {}
    for name, art in policies.items():
        trained = training_sampling(art)
        samples = sample(name, art, config.sampling)
        held_out_scores[name] = {"gold": samples.gold, "rm": samples.rm}
        metrics["policies"][name] = {"path": str(art.path), "kind": art.kind, "fingerprint": art.fingerprint,
                                     **_footing(trained, config.sampling), **_summary(samples, baseline.gold, config),
                                     "own_setting": None}
        if art.kind == BEST_OF_N:
            metrics["policies"][name]["kl_note"] = best_of_n.KL_NOTE
        own = own_setting(trained, config.sampling) if config.also_own_setting and art.kind != BEST_OF_N else None
        if own is not None:  # the policy and the reference both at the policy's training setting
            own_baseline = sample("reference", ref_art, own)
            metrics["policies"][name]["own_setting"] = {
                "sampling": asdict(own), **_summary(sample(name, art, own), own_baseline.gold, config)}
        for i, prompt in enumerate(prompts):
            rows.append({
                "policy": name, "prompt_id": f"test-{i}", "prompt": prompt, "response": samples.responses[i],
                "gold_reward": samples.gold[i], "rm_score": samples.rm[i] if samples.rm else None, "kl": samples.kl[i],
                "kl_k1": samples.kl_k1[i], "kl_k3": samples.kl_k3[i], "length": samples.lengths[i],
                "well_formed": is_well_formed(samples.responses[i]),
                "reference_response": baseline.responses[i], "reference_gold_reward": baseline.gold[i],
            })
        histories[name] = read_log_history(art.path / LOG_HISTORY)

    # The same policies on as many training-split prompts, so a train/held-out gap shows.
    seen = train_prompts(config.data, len(prompts))
    metrics["generalization"] = train_vs_held_out(
        {"reference": ref_art, **{n: a for n, a in policies.items() if a.kind != BEST_OF_N}}, lambda art: load_causal_lm(art.path).to(device).eval(), tokenizer,
        seen, held_out_scores, config.sampling, config.seed, reward_model)

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        write_outputs(out.path, config, metrics, rows, histories)
        for name, m in metrics["policies"].items():
            for key in ("gold_reward", "rm_score", "kl", "kl_k1", "kl_k3", "response_length", "win_rate",
                        "well_formed", "repeated_3grams"):
                if m[key] is not None:
                    out.metrics[f"eval/{name}/{key}"] = m[key]["mean"]
            out.metrics[f"eval/{name}/distinct_2"] = m["distinct_2"]
            if m["own_setting"]:
                for key in ("gold_reward", "kl", "well_formed", "win_rate"):
                    out.metrics[f"eval/{name}/own_setting/{key}"] = m["own_setting"][key]["mean"]
        for name, g in metrics["generalization"].items():
            out.metrics.update({f"eval/{name}/{key}": g[key] for key in ("gold_train", "gold_gap")})
    return open_artifact(config.output_dir, KIND)  # rlhf.cli / pipelines.run print the report path


def _load_policy(name: str, art: Artifact, ref_art: Artifact, reference, device):
    policy = load_causal_lm(art.path).to(device).eval()
    if policy.config.vocab_size != reference.config.vocab_size:
        raise _vocab_error(name, art, ref_art, f"output vocab sizes differ "
                           f"({policy.config.vocab_size} vs {reference.config.vocab_size})")
    return policy


def write_outputs(path: Path, config: Config, metrics: dict, rows: list[dict], histories: dict[str, list[dict]]) -> None:
    """metrics.json, samples.jsonl, the PNG plots and report.md (which links the plots) into ``path``."""
    (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(path / "samples.jsonl", "w") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    points = {name: (Estimate(**m["kl"]), Estimate(**m["gold_reward"])) for name, m in metrics["policies"].items()}
    frontier_plot(points, path / "frontier.png", config.confidence)
    plots = {"Gold reward vs KL to the reference": "frontier.png"}
    drawn = training_curves_plot(histories, list(config.curve_metrics), path / "training_curves.png")
    if drawn:
        plots["Training curves"] = "training_curves.png"
    no_curves = [name for name, history in histories.items() if not any(curve(history, m)[0] for m in drawn)]
    (path / "report.md").write_text(render_report(metrics, rows, plots, no_curves, config.samples_in_report))
