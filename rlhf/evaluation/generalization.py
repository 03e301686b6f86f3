"""Training prompts beside held-out prompts: a gap between the two is reward the policy memorised.

Each policy (and the reference) is sampled once per prompt on as many training-split prompts as the
eval has held-out prompts; gold reward and, with a reward model, how often the RM prefers the same
of (policy sample, reference sample) as the gold reward are reported for both prompt sets.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

from rlhf.evaluation.rollouts import sample_and_score
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig

Scores = dict[str, list[float] | None]  # {"gold": [...], "rm": [...] or None}, one entry per prompt


def score_prompts(model, tokenizer, prompts: list[str], sampling: SamplingConfig, seed: int,
                  reward_model: RewardModel | None) -> Scores:
    """Gold reward and RM score of one sample per prompt."""
    samples = sample_and_score(model, tokenizer, prompts, sampling, seed, reward_model=reward_model)
    return {"gold": samples.gold, "rm": samples.rm}


def rm_agreement(policy: Scores, reference: Scores) -> float | None:
    """Fraction of prompts where the RM orders (policy, reference) samples as the gold reward does.

    Prompts where the gold reward ties are left out; None without an RM or without any untied prompt.
    """
    if policy["rm"] is None or reference["rm"] is None:
        return None
    votes = [(g - gr > 0) == (r - rr > 0) for g, gr, r, rr in
             zip(policy["gold"], reference["gold"], policy["rm"], reference["rm"]) if g != gr]
    return statistics.fmean(votes) if votes else None


def train_vs_held_out(artifacts: dict[str, Any], load: Callable[[Any], Any], tokenizer, prompts: list[str],
                      held_out: dict[str, Scores], sampling: SamplingConfig, seed: int,
                      reward_model: RewardModel | None) -> dict[str, dict[str, float | None]]:
    """Per policy: gold reward and RM agreement on training ``prompts`` and on the held-out prompts.

    ``artifacts`` maps names to artifacts and must include "reference"; ``held_out`` has the same
    names' scores on the held-out prompts; ``load`` turns an artifact into a model.
    """
    train: dict[str, Scores] = {}
    by_fingerprint: dict[str, Scores] = {}
    for name, art in artifacts.items():
        if art.fingerprint not in by_fingerprint:  # identical artifacts are sampled once
            model = load(art)
            by_fingerprint[art.fingerprint] = score_prompts(model, tokenizer, prompts, sampling, seed, reward_model)
            del model
        train[name] = by_fingerprint[art.fingerprint]
    out = {}
    for name in artifacts:
        if name == "reference":
            continue
        gold_train, gold_held_out = statistics.fmean(train[name]["gold"]), statistics.fmean(held_out[name]["gold"])
        out[name] = {
            "train_prompts": len(prompts), "held_out_prompts": len(held_out[name]["gold"]),
            "gold_train": gold_train, "gold_held_out": gold_held_out, "gold_gap": gold_train - gold_held_out,
            "rm_agreement_train": rm_agreement(train[name], train["reference"]),
            "rm_agreement_held_out": rm_agreement(held_out[name], held_out["reference"]),
        }
    return out


def split_lines(split: dict[str, Any], evaluated: int) -> list[str]:
    """The report's statement of the prompt split."""
    disjoint = "disjoint" if split["disjoint"] else "NOT disjoint"
    return [f"- prompts: {evaluated} of {split['test_prompts']} distinct held-out prompts evaluated; "
            f"{split['train_prompts']} distinct training prompts; the two sets are {disjoint} "
            f"(split {split['split']}, dataset `{split['dataset']}`)"]


def generalization_lines(gen: dict[str, dict[str, float | None]], fmt: Callable[[float | None], str]) -> list[str]:
    """The report section: training vs held-out prompts per policy."""
    if not gen:
        return []
    first = next(iter(gen.values()))
    lines = ["## Generalization: training vs held-out prompts", "",
             f"One sample on each of {first['train_prompts']} training-split prompts and {first['held_out_prompts']} "
             "held-out prompts. Gap = training minus held-out gold reward. RM agreement: how often the reward "
             "model orders the policy's and the reference's samples as the gold reward does.", "",
             "| policy | gold reward (train prompts) | gold reward (held-out) | gap | RM agreement (train) | "
             "RM agreement (held-out) |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {fmt(g['gold_train'])} | {fmt(g['gold_held_out'])} | {fmt(g['gold_gap'])} | "
              f"{fmt(g['rm_agreement_train'])} | {fmt(g['rm_agreement_held_out'])} |" for name, g in gen.items()]
    return lines + [""]
