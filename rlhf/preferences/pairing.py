"""Rankings -> preference pairs: a pairing policy per ranking, an aggregation policy across annotators.

Pairing turns one ranking into pairs: ``best_vs_worst`` gives one pair (a top-ranked vs a
bottom-ranked candidate; none when all are tied), ``all_pairs`` every pair with different ranks
(InstructGPT's K-choose-2). Tied candidates never make a pair.

Aggregation over annotators who ranked the same item: ``keep_all`` keeps every annotator's pairs
(disagreeing annotators give opposite rows); ``majority`` keeps, per item and candidate pair, the
direction that *more than half* of the annotators who ranked both candidates chose. A tie or a
"both bad" vote is a vote too (for neither direction), so one "A" plus two "both bad" exports
nothing; a plain plurality (1 for, 0 against, 1 tie) is not a majority either.

Flagged labels keep their ranking (the guidelines say "rank as usual"); ``drop_flagged`` leaves
them out. Every pair carries ``agreement``: the fraction of the annotators who ranked both
candidates that agree with the pair's direction (a tie or "both bad" counts as not agreeing).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from rlhf.config import ConfigError
from rlhf.preferences.agreement import usable
from rlhf.preferences.store import Item, Label

PAIRINGS = ("best_vs_worst", "all_pairs")
AGGREGATIONS = ("majority", "keep_all")


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


def collect_pairs(labels: list[Label], items: dict[str, Item], pairing: str, aggregation: str,
                  drop_flagged: bool = False) -> tuple[list[Pair], dict[str, int]]:
    """Pairs from the usable labels under a pairing and an aggregation policy, plus drop counts."""
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    grouped: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for lab in usable(labels, drop_flagged):
        grouped[lab.item_id][lab.annotator] = lab.ranks
    pairs: list[Pair] = []
    counts = {"pairs/from_rankings": 0, "pairs/dropped_no_majority": 0, "rankings/all_tied": 0}
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
            if share > 0.5:  # more than half of everyone who ranked both (ties and "both bad" included)
                pairs.append(Pair(item_id, x, y, pro, share))
            elif _agreement(anns, y, x)[0] > 0.5:
                pairs.append(Pair(item_id, y, x, con, _agreement(anns, y, x)[0]))
            else:
                counts["pairs/dropped_no_majority"] += 1
    return pairs, counts
