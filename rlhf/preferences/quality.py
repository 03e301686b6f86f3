"""Annotator quality control: gold items with known answers, accuracy with an interval, auto-pause.

Gold items are ordinary items whose answer is known: marked by an admin, read from a ``--gold``
JSONL file (``{"item_id": ..., "ranks": {candidate_id: rank}}`` or ``{"item_id": ..., "vote":
"a_better" | "b_better" | "tie" | "both_bad"}`` for pairs, in the item's candidate order), or, for
simulated runs, items whose gold-reward margin is large (``gold_from_rewards``).

- Onboarding: an annotator's first ``onboarding`` items are gold; afterwards each next item is
  gold with probability ``mix_rate`` (a hash of annotator and label count, so a reload shows the
  same task).
- A label is correct on a gold item when it puts every gold-best candidate strictly above every
  gold-worst candidate (what ``best_vs_worst`` exports; for a pair: picked the gold winner); an
  all-tied answer needs an all-tied label, and "both bad" matches only "both bad".
- Accuracy carries a Wilson score interval. After ``min_gold`` gold answers, an annotator whose
  interval lies entirely below ``min_accuracy`` (upper bound < threshold) is paused: they get no
  more items, and the export can leave them out. An admin can unpause; gold answers given before
  the unpause no longer count toward the next auto-pause.

Defaults (20 onboarding gold, 10 % mixed in, >= 10 answers, 95 % one-sided upper bound < 0.6)
pause a random clicker within 20 labels and < 5 % of honest annotators with 25 % label noise;
``benchmarks/qc_study.py`` measures both (docs/stages/preferences.md).

Tables (same SQLite file as the label store): ``gold_items`` and ``annotator_status``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from rlhf.config import option
from rlhf.preferences.agreement import BOTH_BAD, dense_ranks, is_both_bad
from rlhf.preferences.store import _LATEST, Item, Label, LabelStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS gold_items (item_id TEXT PRIMARY KEY, answer TEXT NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS annotator_status (
    annotator TEXT PRIMARY KEY,
    paused INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    since REAL NOT NULL DEFAULT 0,          -- gold answers before this (the last unpause) don't count
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL DEFAULT ''
);
"""

PAIR_VOTES = {"a_better": (1, 2), "b_better": (2, 1), "tie": (1, 1), BOTH_BAD: (1, 1)}


@dataclass
class QCConfig:
    onboarding: int = option(20, "an annotator's first N items are gold items")
    mix_rate: float = option(0.1, "afterwards, the share of items that are gold")
    min_gold: int = option(10, "gold answers before an annotator can be auto-paused")
    min_accuracy: float = option(0.6, "pause when the accuracy interval lies entirely below this")
    z: float = option(1.645, "Wilson interval z (1.645: the upper bound is a one-sided 95 % bound)")


# ------------------------------------------------------------------------------------------------
# Pure functions.


def wilson(correct: int, n: int, z: float = 1.645) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def parse_answer(item: Item, answer: dict[str, Any]) -> dict[str, Any]:
    """A gold answer ``{"ranks": {...}}`` or ``{"vote": ...}`` checked against ``item``; returns
    ``{"ranks": dense ranks of every candidate, "vote": vote or None}``."""
    vote = answer.get("vote")
    if vote is not None:
        if vote not in PAIR_VOTES:
            raise ValueError(f"gold item {item.item_id}: vote {vote!r} is not one of {', '.join(PAIR_VOTES)}")
        if len(item.candidate_ids) != 2:
            raise ValueError(f"gold item {item.item_id}: a vote answers a pair; this item has "
                             f"{len(item.candidate_ids)} candidates: give \"ranks\" instead")
        ranks = dict(zip(item.candidate_ids, PAIR_VOTES[vote]))
    else:
        ranks = answer.get("ranks")
        if not isinstance(ranks, dict) or set(map(str, ranks)) != set(item.candidate_ids):
            raise ValueError(f"gold item {item.item_id}: give \"ranks\" for exactly its candidates "
                             f"{item.candidate_ids} (1 = best) or a \"vote\"")
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks.values()):
            raise ValueError(f"gold item {item.item_id}: ranks must be integers >= 1, got {ranks}")
    return {"ranks": dense_ranks({str(c): int(r) for c, r in ranks.items()}), "vote": vote}


def is_correct(label: Label, answer: dict[str, Any]) -> bool:
    """Does ``label`` agree with the gold ``answer`` (see the module docstring)?"""
    if label.skipped or not label.ranks:
        return False
    if answer.get("vote") == BOTH_BAD or is_both_bad(label):
        return answer.get("vote") == BOTH_BAD and is_both_bad(label)
    gold, ranks = answer["ranks"], label.ranks
    best = [c for c, r in gold.items() if r == min(gold.values())]
    worst = [c for c, r in gold.items() if r == max(gold.values())]
    if best == worst:  # all tied in gold: the label must tie everything too
        return len(set(ranks.values())) == 1 and set(ranks) == set(gold)
    return all(c in ranks for c in best + worst) and all(ranks[b] < ranks[w] for b in best for w in worst)


def gold_due(annotator: str, labelled: int, cfg: QCConfig) -> bool:
    """Is this annotator's next item (after ``labelled`` items) a gold one?"""
    if labelled < cfg.onboarding:
        return True
    digest = hashlib.sha256(f"gold\x00{annotator}\x00{labelled}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < cfg.mix_rate


def should_pause(correct: int, n: int, cfg: QCConfig) -> bool:
    return n >= cfg.min_gold and wilson(correct, n, cfg.z)[1] < cfg.min_accuracy


def gold_from_rewards(items: Iterable[Item], rewards: dict[str, list[float]], margin: float) -> list[tuple[str, dict]]:
    """Gold answers for simulated runs: items whose best and worst gold reward differ by >= margin,
    answered by the reward order (higher reward = better rank)."""
    out = []
    for it in items:
        r = rewards[it.item_id]
        if max(r) - min(r) >= margin:
            order = sorted(set(r), reverse=True)
            out.append((it.item_id, {"ranks": {c: order.index(v) + 1 for c, v in zip(it.candidate_ids, r)}}))
    return out


def read_gold_file(path: str | Path) -> list[tuple[str, dict]]:
    """(item_id, answer) from a JSONL file; one-line errors naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"gold file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"gold file {path} line {n} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "item_id" not in row or not ({"ranks", "vote"} & set(row)):
            raise ValueError(f"gold file {path} line {n}: expected {{\"item_id\": ..., \"ranks\": {{...}}}} "
                             "or {\"item_id\": ..., \"vote\": \"a_better\"}")
        out.append((str(row["item_id"]), {k: row[k] for k in ("ranks", "vote") if k in row}))
    return out


# ------------------------------------------------------------------------------------------------
# Tables.


def _con(store: LabelStore):
    con = store._con()
    if not getattr(store, "_qc_schema", False):
        con.executescript(SCHEMA)
        store._qc_schema = True
    return con


def add_gold_items(store: LabelStore, entries: Iterable[tuple[str, dict]], source: str = "admin") -> int:
    """Mark items as gold with their answers (replacing an earlier answer); all checked first."""
    rows = []
    for item_id, answer in entries:
        try:
            item = store.item(item_id)
        except KeyError:
            raise ValueError(f"gold item {item_id!r} is not in the label DB: import its candidates first") from None
        rows.append((item.item_id, json.dumps(parse_answer(item, answer)), source))
    _con(store)
    with store._write() as con:
        con.executemany("INSERT OR REPLACE INTO gold_items(item_id, answer, source) VALUES (?, ?, ?)", rows)
    return len(rows)


def remove_gold_item(store: LabelStore, item_id: str) -> None:
    _con(store)
    with store._write() as con:
        con.execute("DELETE FROM gold_items WHERE item_id = ?", (item_id,))


def gold_answers(store: LabelStore) -> dict[str, dict[str, Any]]:
    return {r["item_id"]: json.loads(r["answer"]) for r in _con(store).execute("SELECT * FROM gold_items")}


def status(store: LabelStore, annotator: str) -> dict[str, Any]:
    row = _con(store).execute("SELECT * FROM annotator_status WHERE annotator = ?", (annotator,)).fetchone()
    return dict(row) if row else {"annotator": annotator, "paused": 0, "reason": "", "since": 0.0}


def is_paused(store: LabelStore, annotator: str) -> bool:
    return bool(status(store, annotator)["paused"])


def paused_annotators(store: LabelStore) -> set[str]:
    return {r[0] for r in _con(store).execute("SELECT annotator FROM annotator_status WHERE paused = 1")}


def _set_status(store: LabelStore, annotator: str, paused: bool, reason: str, by: str, reset: bool) -> None:
    _con(store)
    now = time.time()
    with store._write() as con:
        con.execute(
            """INSERT INTO annotator_status(annotator, paused, reason, since, updated_at, updated_by)
               VALUES (:a, :p, :r, :s, :t, :b)
               ON CONFLICT(annotator) DO UPDATE SET paused = :p, reason = :r, updated_at = :t, updated_by = :b,
                   since = CASE WHEN :reset THEN :t ELSE since END""",
            {"a": annotator, "p": int(paused), "r": reason, "s": now if reset else 0.0, "t": now, "b": by,
             "reset": int(reset)},
        )


def pause(store: LabelStore, annotator: str, reason: str, by: str = "auto") -> None:
    _set_status(store, annotator, True, reason, by, reset=False)


def unpause(store: LabelStore, annotator: str, by: str = "admin") -> None:
    """Let an annotator work again; their earlier gold answers no longer count toward auto-pause."""
    _set_status(store, annotator, False, f"unpaused by {by}", by, reset=True)


def gold_labels(store: LabelStore, annotator: str | None = None) -> list[tuple[Label, dict]]:
    """(current label, gold answer) for every gold item an annotator answered (skips excluded)."""
    _con(store)
    where, args = ("AND l.annotator = ?", (annotator,)) if annotator is not None else ("", ())
    rows = store._con().execute(
        f"""SELECT l.*, g.answer AS gold_answer FROM labels l JOIN gold_items g ON g.item_id = l.item_id
            WHERE {_LATEST} AND l.skipped = 0 {where} ORDER BY l.label_id""", args)
    return [(store._label(r), json.loads(r["gold_answer"])) for r in rows]


def accuracy(store: LabelStore, cfg: QCConfig | None = None) -> list[dict[str, Any]]:
    """Per annotator who answered gold items: answers, correct, accuracy, Wilson interval, paused."""
    cfg = cfg or QCConfig()
    tally: dict[str, list[int]] = {}
    for lab, answer in gold_labels(store):
        t = tally.setdefault(lab.annotator, [0, 0])
        t[0] += is_correct(lab, answer)
        t[1] += 1
    out = []
    for name in sorted(set(tally) | paused_annotators(store)):
        k, n = tally.get(name, (0, 0))
        st = status(store, name)
        lo, hi = wilson(k, n, cfg.z)
        out.append({"annotator": name, "gold_answers": n, "correct": k, "accuracy": k / n if n else math.nan,
                    "low": lo, "high": hi, "paused": bool(st["paused"]), "reason": st["reason"]})
    return out


def after_label(store: LabelStore, annotator: str, cfg: QCConfig) -> bool:
    """The quality-control hook after each submit: auto-pause when the gold record is too weak.
    Returns whether the annotator is paused now."""
    st = status(store, annotator)
    if st["paused"]:
        return True
    recent = [(lab, a) for lab, a in gold_labels(store, annotator) if lab.created_at >= st["since"]]
    correct = sum(is_correct(lab, a) for lab, a in recent)
    if should_pause(correct, len(recent), cfg):
        lo, hi = wilson(correct, len(recent), cfg.z)
        pause(store, annotator, f"gold accuracy {correct}/{len(recent)} (interval {lo:.2f}-{hi:.2f} "
                                f"below {cfg.min_accuracy})")
        return True
    return False


def _labelled_count(store: LabelStore, annotator: str) -> int:
    return store._con().execute("SELECT COUNT(DISTINCT item_id) FROM labels WHERE annotator = ?",
                                (annotator,)).fetchone()[0]


def next_gold(store: LabelStore, annotator: str) -> Item | None:
    """A gold item this annotator has not labelled yet (a per-annotator shuffled order)."""
    ids = [r[0] for r in _con(store).execute(
        """SELECT g.item_id FROM gold_items g WHERE NOT EXISTS
           (SELECT 1 FROM labels l WHERE l.item_id = g.item_id AND l.annotator = ?)""", (annotator,))]
    if not ids:
        return None
    key = lambda i: hashlib.sha256(f"{annotator}\x00{i}".encode()).digest()  # noqa: E731
    return store.item(min(ids, key=key))


def choose_item(store: LabelStore, annotator: str, overlap: int, cfg: QCConfig | None) -> Item | None:
    """The next item for an annotator: None when paused; a gold item when one is due; otherwise
    ``store.next_item``. Gold items hold no overlap slot, so the store accepts them from anyone."""
    if cfg is None:
        return store.next_item(annotator, overlap)
    if is_paused(store, annotator):
        return None
    if gold_answers_exist(store) and gold_due(annotator, _labelled_count(store, annotator), cfg):
        item = next_gold(store, annotator)
        if item is not None:
            return item  # gold items need no lease: the store accepts any annotator's label on them
    return store.next_item(annotator, overlap)


def is_gold(store: LabelStore, item_id: str) -> bool:
    return _con(store).execute("SELECT 1 FROM gold_items WHERE item_id = ?", (str(item_id),)).fetchone() is not None


def gold_answers_exist(store: LabelStore) -> bool:
    return _con(store).execute("SELECT 1 FROM gold_items LIMIT 1").fetchone() is not None
