"""Inter-annotator agreement on items that several annotators ranked.

Three views of the same question, as reported by AlpacaFarm / InstructGPT-style collection efforts:

- mean pairwise Kendall tau-b: for every item and every pair of annotators who both ranked it,
  the rank correlation of their two rankings (tau-b handles ties), averaged;
- Krippendorff's alpha (ordinal): one reliability matrix with a row per annotator and a column per
  (item, candidate), value = the rank given; chance-corrected, handles missing values;
- pairwise agreement rate: for every item, annotator pair and candidate pair, whether the two
  annotators put that candidate pair in the same relation (better / tied / worse).

Ranks are dense-rank normalised first (1,1,3 and 1,1,2 are the same ranking), so the ordinal
distances alpha sees do not depend on how an annotator numbered tied candidates. Pairs (K=2) and
K-way items (K>=3) are reported separately (``Agreement.pair`` / ``Agreement.kway``): their rank
scales differ, so one pooled alpha would mix them. A "both bad" vote on a pair (``meta["vote"]``)
is its own relation in the pairwise rate (it agrees with another "both bad", not with a plain tie).

Skipped labels carry no ranking and are left out; flagged labels keep their ranking (the guidelines
say "rank as usual") unless ``drop_flagged`` is set (both are counted per annotator).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


BOTH_BAD = "both_bad"


def usable(labels: Iterable[Any], drop_flagged: bool = False) -> list[Any]:
    """Labels with a ranking that counts: not skipped, at least two candidates ranked (and, with
    ``drop_flagged``, not flagged)."""
    return [lab for lab in labels
            if not lab.skipped and len(lab.ranks) >= 2 and not (drop_flagged and lab.flagged)]


def vote(label: Any) -> str | None:
    """The vote type a label was given with ("a_better", "tie", "both_bad", "ranking", ...), if recorded."""
    return (getattr(label, "meta", None) or {}).get("vote")


def is_both_bad(label: Any) -> bool:
    return vote(label) == BOTH_BAD


def dense_ranks(ranks: dict[str, int]) -> dict[str, int]:
    """Dense-rank normalisation: 1,1,3 -> 1,1,2 (ties keep sharing a rank, no gaps)."""
    levels = {r: i + 1 for i, r in enumerate(sorted(set(ranks.values())))}
    return {c: levels[r] for c, r in ranks.items()}


def by_item(labels: Iterable[Any], drop_flagged: bool = False) -> dict[str, dict[str, dict[str, int]]]:
    """item_id -> annotator -> dense ranks, for usable labels (the latest label per annotator wins)."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for lab in usable(labels, drop_flagged):
        out[lab.item_id][lab.annotator] = dense_ranks(lab.ranks)
    return dict(out)


def relations(labels: Iterable[Any], drop_flagged: bool = False) -> dict[str, dict[str, dict[tuple[str, str], Any]]]:
    """item -> annotator -> {(x, y): -1/0/1 (x better/tied/worse) or "both_bad"} for usable labels."""
    out: dict[str, dict[str, dict[tuple[str, str], Any]]] = defaultdict(dict)
    for lab in usable(labels, drop_flagged):
        cands = sorted(lab.ranks)
        out[lab.item_id][lab.annotator] = {
            (x, y): BOTH_BAD if is_both_bad(lab) else _sign(lab.ranks[x] - lab.ranks[y])
            for x, y in itertools.combinations(cands, 2)
        }
    return dict(out)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


@dataclass
class Agreement:
    kendall_tau: float  # mean over (item, annotator pair); NaN when nothing overlaps
    krippendorff_alpha: float
    pairwise_rate: float
    overlapping_items: int  # items with >= 2 usable labels
    annotator_pairs: int  # (item, annotator pair) comparisons behind the means
    per_annotator: dict[str, dict[str, int]] = field(default_factory=dict)
    pair: "Agreement | None" = None  # the same statistics on K=2 items only
    kway: "Agreement | None" = None  # ... and on K>=3 items only

    def metrics(self, prefix: str = "agreement/") -> dict[str, Any]:
        """Flat metric dict for a manifest (None for undefined values: NaN is not valid JSON);
        ``agreement/pair/*`` and ``agreement/kway/*`` hold the separate pair and K-way numbers."""
        out = {
            f"{prefix}kendall_tau": _none_if_nan(self.kendall_tau),
            f"{prefix}krippendorff_alpha": _none_if_nan(self.krippendorff_alpha),
            f"{prefix}pairwise_rate": _none_if_nan(self.pairwise_rate),
            f"{prefix}overlapping_items": self.overlapping_items,
            f"{prefix}annotator_pairs": self.annotator_pairs,
        }
        for name, sub in (("pair", self.pair), ("kway", self.kway)):
            if sub is not None:
                out.update(sub.metrics(f"{prefix}{name}/"))
        return out


def per_annotator_counts(labels: Iterable[Any], drop_flagged: bool = False) -> dict[str, dict[str, int]]:
    """Per annotator: usable labels, skipped, flagged, and usable labels on overlapping items."""
    labels = list(labels)
    overlapping = {item for item, anns in by_item(labels, drop_flagged).items() if len(anns) >= 2}
    counts: dict[str, dict[str, int]] = {}
    for lab in labels:
        c = counts.setdefault(lab.annotator, {"labels": 0, "skipped": 0, "flagged": 0, "overlapping": 0})
        c["skipped"] += lab.skipped
        c["flagged"] += lab.flagged and not lab.skipped
    for lab in usable(labels, drop_flagged):
        counts[lab.annotator]["labels"] += 1
        counts[lab.annotator]["overlapping"] += lab.item_id in overlapping
    return dict(sorted(counts.items()))


def kendall_taus(grouped: dict[str, dict[str, dict[str, int]]]) -> list[float]:
    """Tau-b for every (item, annotator pair); NaN where a ranking is all ties (tau undefined)."""
    from scipy.stats import kendalltau

    taus = []
    for item, anns in sorted(grouped.items()):
        for a, b in itertools.combinations(sorted(anns), 2):
            common = sorted(set(anns[a]) & set(anns[b]))
            if len(common) < 2:
                continue
            tau = kendalltau([anns[a][c] for c in common], [anns[b][c] for c in common], variant="b").statistic
            taus.append(float(tau))
    return taus


def pairwise_agreements(grouped: dict[str, dict[str, dict[tuple[str, str], Any]]]) -> list[bool]:
    """For each (item, annotator pair, candidate pair): same relation (better/tied/worse/both bad)?
    ``grouped`` is the output of ``relations``."""
    out = []
    for item, anns in sorted(grouped.items()):
        for a, b in itertools.combinations(sorted(anns), 2):
            for pair in sorted(set(anns[a]) & set(anns[b])):
                out.append(anns[a][pair] == anns[b][pair])
    return out


def _alpha(grouped: dict[str, dict[str, dict[str, int]]]) -> float:
    """Ordinal alpha over (item, candidate) units; NaN when it is undefined (e.g. one distinct value)."""
    import krippendorff

    annotators = sorted({a for anns in grouped.values() for a in anns})
    units = sorted({(item, c) for item, anns in grouped.items() for ranks in anns.values() for c in ranks})
    if len(annotators) < 2 or not units:
        return math.nan
    column = {u: j for j, u in enumerate(units)}
    data = np.full((len(annotators), len(units)), np.nan)
    for i, a in enumerate(annotators):
        for item, anns in grouped.items():
            for c, rank in anns.get(a, {}).items():
                data[i, column[(item, c)]] = rank
    try:
        alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    except ValueError:  # fewer than two distinct values, or no unit with two ratings
        return math.nan
    return float(alpha)


def _mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _overlapping(labels: Iterable[Any], drop_flagged: bool = False) -> dict[str, dict[str, dict[str, int]]]:
    return {item: anns for item, anns in by_item(labels, drop_flagged).items() if len(anns) >= 2}


def _rate(labels: list[Any], drop_flagged: bool = False) -> float:
    rel = {i: anns for i, anns in relations(labels, drop_flagged).items() if len(anns) >= 2}
    return _mean([float(x) for x in pairwise_agreements(rel)])


# One function per statistic over Label lists (the admin panel calls these by name); NaN = undefined.


def mean_kendall_tau(labels: Iterable[Any]) -> float:
    return _mean(kendall_taus(_overlapping(labels)))


def krippendorff_alpha(labels: Iterable[Any]) -> float:
    """Ordinal alpha; NaN when pairs and K-way items are mixed (see ``agreement`` for each separately)."""
    grouped = _overlapping(labels)
    return _alpha(grouped) if len(_kinds(list(labels), grouped)) <= 1 else math.nan


def pairwise_agreement(labels: Iterable[Any]) -> float:
    return _rate(list(labels))


def _kinds(labels: list[Any], grouped: dict) -> set[str]:
    return {_kind(len(ranks)) for anns in grouped.values() for ranks in anns.values()}


def _kind(k: int) -> str:
    return "pair" if k == 2 else "kway"


def _stats(labels: list[Any], drop_flagged: bool) -> Agreement:
    grouped = _overlapping(labels, drop_flagged)
    taus = kendall_taus(grouped)
    return Agreement(
        kendall_tau=_mean(taus),
        # One alpha over one rank scale only: pooled pairs + K-way items would mix scales.
        krippendorff_alpha=_alpha(grouped) if len(_kinds(labels, grouped)) <= 1 else math.nan,
        pairwise_rate=_rate(labels, drop_flagged),
        overlapping_items=len(grouped),
        annotator_pairs=len(taus),
    )


def agreement(labels: Iterable[Any], drop_flagged: bool = False) -> Agreement:
    """Agreement statistics over the items that at least two annotators ranked; ``.pair`` and
    ``.kway`` hold the same statistics on pair (K=2) and K-way (K>=3) items separately."""
    labels = list(labels)
    result = _stats(labels, drop_flagged)
    result.per_annotator = per_annotator_counts(labels, drop_flagged)
    result.pair = _stats([lab for lab in labels if len(lab.ranks) == 2], drop_flagged)
    result.kway = _stats([lab for lab in labels if len(lab.ranks) != 2], drop_flagged)
    return result


def per_annotator_agreement(labels: Iterable[Any], drop_flagged: bool = False) -> dict[str, dict[str, Any]]:
    """Per annotator: how often they put a candidate pair in the same relation as each other
    annotator who ranked the same item ({"rate": share, "comparisons": n}; rate NaN when n = 0)."""
    rel = relations(list(labels), drop_flagged)
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for anns in rel.values():
        for a, b in itertools.combinations(sorted(anns), 2):
            for pair in set(anns[a]) & set(anns[b]):
                same = int(anns[a][pair] == anns[b][pair])
                for who in (a, b):
                    hits[who][0] += same
                    hits[who][1] += 1
    return {a: {"rate": k / n if n else math.nan, "comparisons": n} for a, (k, n) in sorted(hits.items())}
