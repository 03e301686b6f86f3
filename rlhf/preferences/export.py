"""Rankings in a label DB -> the data and metrics of a "preferences" artifact.

Checks the inputs first (the candidates artifact; an intact label DB whose labels name these
candidates), then pairs and aggregates the usable labels (rlhf/preferences/pairing.py), splits
train/test by prompt and measures agreement and how often the labels side with the gold reward.
Skipped labels are excluded; flagged labels keep their ranking unless ``drop_flagged`` is set. Used by the preferences stage and
``python -m annotation_ui.export``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable

from datasets import DatasetDict

from rlhf.artifacts import Artifact, ArtifactError, open_artifact
from rlhf.candidates import KIND as CANDIDATES, load_candidates, source_item_id
from rlhf.config import ConfigError
from rlhf.preferences.agreement import agreement, is_both_bad, usable
from rlhf.preferences.artifact import split_by_prompt
from rlhf.preferences.pairing import PAIRINGS, collect_pairs
from rlhf.preferences.store import Item, Label, LabelStore, items_from_candidates
from rlhf.sampling import join
from rlhf.tasks.gold import gold_reward

SQLITE_HEADER = b"SQLite format 3\x00"
LABEL_TABLES = {"items", "labels"}
ANNOTATE_HINT = "label items with `python -m annotation_ui --candidates <candidates artifact> --db <db>`"


def candidate_items(path: str | Path) -> tuple[Artifact, list[Item]]:
    artifact = open_artifact(path, CANDIDATES)
    try:
        return artifact, items_from_candidates(load_candidates(artifact))
    except ValueError as exc:  # missing columns, mismatched ids/texts
        raise ArtifactError(f"candidates artifact {artifact.path}: {exc}") from exc


def open_label_db(path: str | Path) -> LabelStore:
    """A LabelStore on an existing, intact label DB (LabelStore itself would create a fresh one)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"label DB not found: {path}. First {ANNOTATE_HINT} (or use simulated annotators).")
    with open(path, "rb") as fh:
        if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise ArtifactError(f"{path} is not a label DB (not an SQLite database). Pass the --db the annotation app wrote.")
    try:
        con = sqlite3.connect(path)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            check = [row[0] for row in con.execute("PRAGMA quick_check")]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ArtifactError(f"label DB {path} is corrupt or truncated ({exc}). Restore it from a backup copy.") from exc
    if not LABEL_TABLES <= tables:
        raise ArtifactError(
            f"{path} is an SQLite database but not a label DB (it has no {'/'.join(sorted(LABEL_TABLES))} tables). "
            "Pass the --db the annotation app wrote."
        )
    if check != ["ok"]:
        raise ArtifactError(f"label DB {path} is corrupt or truncated ({check[0]}). Restore it from a backup copy.")
    return LabelStore(path)


def check_labels(labels: Iterable[Label], items: dict[str, Item], source: str = "the candidates artifact") -> None:
    """Every label must name an item and candidates of *these* candidates (not of an older sample)."""
    for lab in labels:
        item = items.get(lab.item_id)
        if item is None:
            raise ArtifactError(
                f"label {lab.label_id} by {lab.annotator} names item {lab.item_id!r}, which is not in {source}. "
                "The DB was filled from other candidates: pass the candidates artifact it was made from."
            )
        unknown = sorted(set(lab.ranks) - set(item.candidate_ids))
        if unknown:
            raise ArtifactError(
                f"label {lab.label_id} by {lab.annotator} on item {lab.item_id!r} ranks unknown candidate id(s) "
                f"{unknown}; {source} has {item.candidate_ids}. Pass the candidates artifact the DB was made from."
            )


def select_labels(store: LabelStore, include: Callable[[str], bool] | None = None) -> list[Label]:
    """Current labels (latest revision per annotator and item), optionally only some annotators."""
    return [lab for lab in store.labels(latest_only=True) if include is None or include(lab.annotator)]


def build_export(
    store: LabelStore, items: list[Item], pairing: str = "best_vs_worst", aggregation: str = "majority",
    test_fraction: float = 0.1, seed: int = 0, include: Callable[[str], bool] | None = None,
    drop_flagged: bool = False,
) -> tuple[DatasetDict, dict[str, Any]]:
    """The preference dataset and its metrics (pair counts, agreement, skipped/flagged counts).

    ``include`` picks annotators (e.g. not simulated, not paused by quality control).
    """
    if pairing not in PAIRINGS:
        raise ConfigError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRINGS)}")
    by_id = {it.item_id: it for it in items}
    labels = select_labels(store, include)
    check_labels(labels, by_id)
    pairs, counts = collect_pairs(labels, by_id, pairing, aggregation, drop_flagged)
    if not pairs:
        n_usable = len(usable(labels, drop_flagged))
        raise ArtifactError(
            f"nothing to export from {store.db_path}: {len(labels)} labels, {n_usable} usable (not skipped"
            f"{' or flagged' if drop_flagged else ''}), 0 preference pairs (all rankings tied or no majority). "
            f"First {ANNOTATE_HINT}."
        )
    rows = []
    for p in pairs:
        item = by_id[p.item_id]
        text = dict(zip(item.candidate_ids, item.candidates))
        rows.append({"prompt": item.prompt, "chosen": text[p.chosen], "rejected": text[p.rejected],
                     # the prompt's id, not a selected pair's: a prompt's pairs never straddle the split
                     "prompt_id": source_item_id(item.item_id), "annotators": p.annotators,
                     "agreement": p.agreement})
    data = split_by_prompt(rows, test_fraction, seed)
    stats = agreement(labels, drop_flagged)
    # How often the labels side with the task's gold reward (the simulated annotators' ground truth).
    chosen_gold = gold_reward(join(r["prompt"], r["chosen"]) for r in rows)
    rejected_gold = gold_reward(join(r["prompt"], r["rejected"]) for r in rows)
    metrics = {
        "pairs/train": len(data["train"]), "pairs/test": len(data["test"]), "pairs/total": len(rows),
        **counts,
        "pairs/agreement_mean": sum(r["agreement"] for r in rows) / len(rows),
        "gold/chosen_better": sum(c > r for c, r in zip(chosen_gold, rejected_gold)) / len(rows),
        "gold/margin_mean": sum(c - r for c, r in zip(chosen_gold, rejected_gold)) / len(rows),
        "labels/total": len(labels),
        "labels/usable": len(usable(labels, drop_flagged)),
        "labels/skipped": sum(lab.skipped for lab in labels),
        "labels/flagged": sum(lab.flagged for lab in labels),
        "labels/both_bad": sum(is_both_bad(lab) for lab in labels),
        "items/labelled": len({lab.item_id for lab in usable(labels, drop_flagged)}),
        "items/total": len(items),
        "annotators": len(stats.per_annotator),
        **stats.metrics(),
        "per_annotator": stats.per_annotator,
    }
    return data, metrics


def export_preferences(
    store: LabelStore, items: list[Item], pairing: str = "best_vs_worst", aggregation: str = "majority",
    test_fraction: float = 0.1, seed: int = 0, include: Callable[[str], bool] | None = None,
    drop_flagged: bool = False,
) -> DatasetDict:
    """TRL preference pairs (prompt/chosen/rejected + prompt_id, annotators, agreement), train/test."""
    return build_export(store, items, pairing, aggregation, test_fraction, seed, include, drop_flagged)[0]


def db_state(store: LabelStore) -> dict[str, Any]:
    """The DB's path and what changes when anyone labels: row count and newest label id (append-only)."""
    rows = store.labels(latest_only=False)
    return {"path": str(store.db_path), "label_rows": len(rows),
            "last_label_id": max((r.label_id for r in rows), default=0)}
