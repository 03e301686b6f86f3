"""Choose what to label: candidate pairs of a candidates artifact, within a label budget.

Reads a candidates artifact (K candidates per prompt) and writes another, of two-candidate items
picked by ``selection.strategy`` (rlhf/preferences/selection.py), with the original candidate ids;
the annotation app (``python -m annotation_ui --candidates <this artifact>``) and the preferences
stage read it exactly like the generate stage's output. Strategies that score pairs need a reward
model (``reward_model``; an ensemble for ensemble_disagreement and double_thompson).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from rlhf.artifacts import Artifact, open_artifact, write_artifact
from rlhf.candidates import COLUMNS, KIND
from rlhf.config import ConfigError, option
from rlhf.preferences.export import candidate_items
from rlhf.preferences.selection import NEEDS_REWARD_MODEL, SelectionConfig, select_pairs
from rlhf.reward_model import RewardModel

REWARD = "reward"


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/selected", "where the selected candidates artifact is written", hashed=False)
    candidates: str = option("${run_dir}/candidates", "candidates artifact to select pairs from", hashed=False)
    reward_model: str | None = option(
        None, "reward artifact that scores the pairs (strategies entropy, ensemble_disagreement, double_thompson); "
        "null for all, random and diversity", hashed=False)
    selection: SelectionConfig = option(SelectionConfig(), "selection strategy and label budget")
    seed: int = option(0, "seed of the random choices (random pairs, tie breaks, Thompson draws)")


def inputs(config: Config) -> dict[str, tuple[str, str]]:
    needed = {"candidates": (config.candidates, KIND)}
    if config.selection.strategy in NEEDS_REWARD_MODEL:
        if config.reward_model is None:
            raise ConfigError(f"selection.strategy={config.selection.strategy} scores pairs with a reward model: set "
                              "reward_model=<reward artifact> (e.g. ${run_dir}/reward from python -m pipelines.reward)")
        needed["reward_model"] = (config.reward_model, REWARD)
    return needed


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    candidates, items = candidate_items(inputs["candidates"].path)
    rm = RewardModel.load(inputs["reward_model"].path) if "reward_model" in inputs else None
    chosen = select_pairs(items, config.selection.budget, config.selection, rm, config.seed)
    if not chosen:
        raise ConfigError(f"selection.strategy={config.selection.strategy} chose no pair from {candidates.path} "
                          f"({len(items)} items): every candidate pair is excluded or the candidates are identical")
    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        rows = [{"prompt_id": it.item_id, "prompt": it.prompt, "candidate_ids": it.candidate_ids,
                 "candidates": it.candidates} for it in chosen]
        Dataset.from_list(rows).select_columns(COLUMNS).save_to_disk(str(Path(out.path) / "data"))
        per_prompt = Counter(it.prompt for it in chosen)
        out.extra["selection"] = {"strategy": config.selection.strategy, "budget": config.selection.budget,
                                  "source_items": len(items)}
        out.metrics.update({
            "selected/items": len(chosen),
            "selected/prompts": len(per_prompt),
            "selected/max_per_prompt": max(per_prompt.values()),
            "source/items": len(items),
            "source/candidates": sum(len(it.candidates) for it in items),
        })
    return open_artifact(config.output_dir, KIND)
