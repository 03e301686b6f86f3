"""Rankings in a label DB -> a "preferences" artifact (TRL prompt/chosen/rejected pairs).

    python -m annotation_ui.export --candidates runs/tiny/candidates --db runs/tiny/labels.sqlite \\
        --out runs/tiny/preferences [--pairing best_vs_worst|all_pairs] [--aggregation majority|keep_all]

Pairing turns one ranking into pairs: ``best_vs_worst`` gives one pair (a top-ranked vs a
bottom-ranked candidate; none when all are tied), ``all_pairs`` every pair with different ranks
(InstructGPT's K-choose-2). Tied candidates never make a pair.

Aggregation over annotators who ranked the same item: ``keep_all`` keeps every annotator's pairs
(disagreeing annotators give opposite rows); ``majority`` keeps, per item and candidate pair, the
direction most of the annotators who ranked both candidates chose, and drops exact ties.

Every row carries ``agreement``: the fraction of the annotators who ranked both candidates that
agree with the row's direction (a tie counts as not agreeing). Skipped and flagged labels are
excluded. Train/test are split by prompt, so no prompt is in both.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from datasets import Dataset, DatasetDict, Features, List, Value, load_from_disk

from annotation_ui.agreement import agreement, usable
from annotation_ui.storage import Item, Label, LabelStore, items_from_candidates
from rlhf.artifacts import Artifact, ArtifactError, open_artifact, write_artifact
from rlhf.config import ConfigError, option
from rlhf.sampling import join
from rlhf.tasks.gold import gold_reward

KIND = "preferences"
PAIRINGS = ("best_vs_worst", "all_pairs")
AGGREGATIONS = ("majority", "keep_all")
FEATURES = Features({
    "prompt": Value("string"), "chosen": Value("string"), "rejected": Value("string"),
    "prompt_id": Value("string"), "annotators": List(Value("string")), "agreement": Value("float64"),
})
SQLITE_HEADER = b"SQLite format 3\x00"
LABEL_TABLES = {"items", "labels"}
ANNOTATE_HINT = "label items with `python -m annotation_ui --candidates <candidates artifact> --db <db>`"


# --------------------------------------------------------------------------------------------
# Inputs: the candidates artifact and the label DB, checked before anything is read.


def candidate_items(path: str | Path) -> tuple[Artifact, list[Item]]:
    artifact = open_artifact(path, "candidates")
    try:
        return artifact, items_from_candidates(load_from_disk(str(artifact.path / "data")))
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


# --------------------------------------------------------------------------------------------
# Rankings -> pairs.


def ranking_pairs(ranks: dict[str, int], order: list[str], pairing: str) -> list[tuple[str, str]]:
    """(chosen_id, rejected_id) pairs from one ranking (1 = best); tied candidates make no pair.

    ``order`` (the item's candidate order) makes the choice among tied best/worst deterministic.
    """
    ranked = [c for c in order if c in ranks]
    if pairing == "best_vs_worst":
        best = min(ranked, key=lambda c: ranks[c])  # min/max return the first of equals
        worst = max(ranked, key=lambda c: ranks[c])
        return [(best, worst)] if ranks[best] < ranks[worst] else []
    if pairing == "all_pairs":
        pairs = []
        for x, y in itertools.combinations(ranked, 2):
            if ranks[x] != ranks[y]:
                pairs.append((x, y) if ranks[x] < ranks[y] else (y, x))
        return pairs
    raise ConfigError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRINGS)}")


@dataclass
class Pair:
    item_id: str
    chosen: str  # candidate ids
    rejected: str
    annotators: list[str]
    agreement: float


def _agreement(anns: dict[str, dict[str, int]], chosen: str, rejected: str) -> tuple[float, list[str], list[str]]:
    """Fraction of the annotators who ranked both that prefer ``chosen``; and who did / did the opposite."""
    voters = [a for a, r in anns.items() if chosen in r and rejected in r]
    pro = [a for a in voters if anns[a][chosen] < anns[a][rejected]]
    con = [a for a in voters if anns[a][chosen] > anns[a][rejected]]
    return len(pro) / len(voters), pro, con


def collect_pairs(labels: list[Label], items: dict[str, Item], pairing: str, aggregation: str) -> tuple[list[Pair], dict[str, int]]:
    """Pairs from the usable labels under a pairing and an aggregation policy, plus drop counts."""
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    grouped: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for lab in usable(labels):
        grouped[lab.item_id][lab.annotator] = lab.ranks
    pairs: list[Pair] = []
    counts = {"pairs/from_rankings": 0, "pairs/dropped_annotator_ties": 0, "rankings/all_tied": 0}
    for item_id in (i for i in items if i in grouped):  # candidates order: deterministic output
        anns, order = grouped[item_id], items[item_id].candidate_ids
        per_annotator = {a: ranking_pairs(r, order, pairing) for a, r in sorted(anns.items())}
        counts["pairs/from_rankings"] += sum(map(len, per_annotator.values()))
        counts["rankings/all_tied"] += sum(len(set(r.values())) == 1 for r in anns.values())
        if aggregation == "keep_all":
            for a, ann_pairs in per_annotator.items():
                for chosen, rejected in ann_pairs:
                    pairs.append(Pair(item_id, chosen, rejected, [a], _agreement(anns, chosen, rejected)[0]))
            continue
        # majority: every candidate pair that some annotator's pairing produced, decided by all who ranked both
        candidate_pairs = dict.fromkeys(tuple(sorted(p, key=order.index)) for ps in per_annotator.values() for p in ps)
        for x, y in candidate_pairs:
            share, pro, con = _agreement(anns, x, y)
            if len(pro) == len(con):
                counts["pairs/dropped_annotator_ties"] += 1
            elif len(pro) > len(con):
                pairs.append(Pair(item_id, x, y, pro, share))
            else:
                pairs.append(Pair(item_id, y, x, con, _agreement(anns, y, x)[0]))
    return pairs, counts


def split_by_prompt(rows: list[dict[str, Any]], test_fraction: float, seed: int) -> DatasetDict:
    """Train/test by prompt_id, so a prompt's pairs never straddle the split."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    prompt_ids = sorted({r["prompt_id"] for r in rows})
    random.Random(seed).shuffle(prompt_ids)
    n_test = round(test_fraction * len(prompt_ids))
    if test_fraction > 0 and len(prompt_ids) >= 2:
        n_test = min(max(n_test, 1), len(prompt_ids) - 1)  # both splits non-empty when possible
    test_ids = set(prompt_ids[:n_test])
    split = {"train": [r for r in rows if r["prompt_id"] not in test_ids],
             "test": [r for r in rows if r["prompt_id"] in test_ids]}
    return DatasetDict({name: Dataset.from_list(part, features=FEATURES) if part
                        else Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES)
                        for name, part in split.items()})


# --------------------------------------------------------------------------------------------
# The export itself, importable by the preferences stage.


def select_labels(store: LabelStore, include: Callable[[str], bool] | None = None) -> list[Label]:
    """Current labels (latest revision per annotator and item), optionally only some annotators."""
    return [lab for lab in store.labels(latest_only=True) if include is None or include(lab.annotator)]


def build_export(
    store: LabelStore, items: list[Item], pairing: str = "best_vs_worst", aggregation: str = "majority",
    test_fraction: float = 0.1, seed: int = 0, include: Callable[[str], bool] | None = None,
) -> tuple[DatasetDict, dict[str, Any]]:
    """The preference dataset and its metrics (pair counts, agreement, skipped/flagged counts)."""
    if pairing not in PAIRINGS:
        raise ConfigError(f"unknown pairing {pairing!r}; choose one of {', '.join(PAIRINGS)}")
    by_id = {it.item_id: it for it in items}
    labels = select_labels(store, include)
    check_labels(labels, by_id)
    pairs, counts = collect_pairs(labels, by_id, pairing, aggregation)
    if not pairs:
        n_usable = len(usable(labels))
        raise ArtifactError(
            f"nothing to export from {store.db_path}: {len(labels)} labels, {n_usable} usable (not skipped or "
            f"flagged), 0 preference pairs (all rankings tied or annotators split evenly). First {ANNOTATE_HINT}."
        )
    rows = []
    for p in pairs:
        item = by_id[p.item_id]
        text = dict(zip(item.candidate_ids, item.candidates))
        rows.append({"prompt": item.prompt, "chosen": text[p.chosen], "rejected": text[p.rejected],
                     "prompt_id": item.item_id, "annotators": p.annotators, "agreement": p.agreement})
    data = split_by_prompt(rows, test_fraction, seed)
    stats = agreement(labels)
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
        "labels/usable": len(usable(labels)),
        "labels/skipped": sum(lab.skipped for lab in labels),
        "labels/flagged": sum(lab.flagged for lab in labels),
        "items/labelled": len({lab.item_id for lab in usable(labels)}),
        "items/total": len(items),
        "annotators": len(stats.per_annotator),
        **stats.metrics(),
        "per_annotator": stats.per_annotator,
    }
    return data, metrics


def export_preferences(
    store: LabelStore, items: list[Item], pairing: str = "best_vs_worst", aggregation: str = "majority",
    test_fraction: float = 0.1, seed: int = 0, include: Callable[[str], bool] | None = None,
) -> DatasetDict:
    """TRL preference pairs (prompt/chosen/rejected + prompt_id, annotators, agreement), train/test."""
    return build_export(store, items, pairing, aggregation, test_fraction, seed, include)[0]


def write_preferences(
    output_dir: str | Path, config: Any, candidates: Artifact, data: DatasetDict | None,
    metrics: dict[str, Any], label_db: dict[str, Any],
) -> Artifact:
    """Write the "preferences" artifact: data/ via save_to_disk, metrics and the DB's state in the manifest.

    Under several processes every rank calls this; ranks other than the main one pass ``data=None``.
    """
    with write_artifact(output_dir, KIND, config, {"candidates": candidates}) as out:
        if data is not None:
            data.save_to_disk(str(out.path / "data"))
            out.metrics.update(metrics)
            out.extra["label_db"] = label_db
    return open_artifact(output_dir, KIND)


def db_state(store: LabelStore) -> dict[str, Any]:
    """The DB's path and what changes when anyone labels: row count and newest label id (append-only)."""
    rows = store.labels(latest_only=False)
    return {"path": str(store.db_path), "label_rows": len(rows),
            "last_label_id": max((r.label_id for r in rows), default=0)}


# --------------------------------------------------------------------------------------------
# Command line.


@dataclass
class ExportConfig:
    """Recorded in the manifest of an artifact written by ``python -m annotation_ui.export``."""

    candidates: str = option(None, "candidates artifact the DB's items came from")
    db: str = option(None, "label DB written by the annotation app")
    output_dir: str = option(None, "where the preferences artifact is written")
    pairing: str = option("best_vs_worst", "best_vs_worst | all_pairs")
    aggregation: str = option("majority", "majority | keep_all")
    test_fraction: float = option(0.1, "fraction of prompts held out as the test split")
    seed: int = option(0, "seed of the train/test split")


def main(argv: list[str] | None = None) -> None:
    from rlhf.cli import fail

    p = argparse.ArgumentParser(prog="python -m annotation_ui.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", required=True, help="candidates artifact (python -m pipelines.generate)")
    p.add_argument("--db", required=True, help="SQLite label DB written by the annotation app")
    p.add_argument("--out", required=True, help="output preferences artifact directory")
    p.add_argument("--pairing", choices=PAIRINGS, default="best_vs_worst")
    p.add_argument("--aggregation", choices=AGGREGATIONS, default="majority")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = ExportConfig(args.candidates, args.db, args.out, args.pairing, args.aggregation,
                          args.test_fraction, args.seed)
    try:
        candidates, items = candidate_items(args.candidates)
        store = open_label_db(args.db)
        data, metrics = build_export(store, items, args.pairing, args.aggregation, args.test_fraction, args.seed)
        art = write_preferences(args.out, config, candidates, data, metrics, db_state(store))
    except (ConfigError, ArtifactError) as exc:
        fail(str(exc))
        return
    m = art.metrics
    print(f"[preferences] {m['pairs/train']} train / {m['pairs/test']} test pairs from {m['labels/usable']} "
          f"labels ({m['labels/skipped']} skipped, {m['labels/flagged']} flagged) -> {art.path}")


if __name__ == "__main__":
    main()
