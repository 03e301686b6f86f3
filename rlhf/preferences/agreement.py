"""Inter-annotator agreement on items that several annotators ranked.

Three views of the same question, as reported by AlpacaFarm / InstructGPT-style collection efforts:

- mean pairwise Kendall tau-b: for every item and every pair of annotators who both ranked it,
  the rank correlation of their two rankings (tau-b handles ties), averaged;
- Krippendorff's alpha (ordinal): one reliability matrix with a row per annotator and a column per
  (item, candidate), value = the rank given; chance-corrected, handles missing values;
- pairwise agreement rate: for every item, annotator pair and candidate pair, whether the two
  annotators put that candidate pair in the same relation (better / tied / worse).

Skipped and flagged labels carry no usable ranking and are left out (they are counted per annotator).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


def usable(labels: Iterable[Any]) -> list[Any]:
    """Labels with a ranking that counts: not skipped, not flagged, at least two candidates ranked."""
    return [lab for lab in labels if not lab.skipped and not lab.flagged and len(lab.ranks) >= 2]


def by_item(labels: Iterable[Any]) -> dict[str, dict[str, dict[str, int]]]:
    """item_id -> annotator -> ranks, for usable labels (the latest label per annotator wins)."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for lab in usable(labels):
        out[lab.item_id][lab.annotator] = lab.ranks
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

    def metrics(self, prefix: str = "agreement/") -> dict[str, Any]:
        """Flat metric dict for a manifest (None for undefined values: NaN is not valid JSON)."""
        return {
            f"{prefix}kendall_tau": _none_if_nan(self.kendall_tau),
            f"{prefix}krippendorff_alpha": _none_if_nan(self.krippendorff_alpha),
            f"{prefix}pairwise_rate": _none_if_nan(self.pairwise_rate),
            f"{prefix}overlapping_items": self.overlapping_items,
            f"{prefix}annotator_pairs": self.annotator_pairs,
        }


def per_annotator_counts(labels: Iterable[Any]) -> dict[str, dict[str, int]]:
    """Per annotator: usable labels, skipped, flagged, and usable labels on overlapping items."""
    labels = list(labels)
    overlapping = {item for item, anns in by_item(labels).items() if len(anns) >= 2}
    counts: dict[str, dict[str, int]] = {}
    for lab in labels:
        c = counts.setdefault(lab.annotator, {"labels": 0, "skipped": 0, "flagged": 0, "overlapping": 0})
        c["skipped"] += lab.skipped
        c["flagged"] += lab.flagged and not lab.skipped
    for lab in usable(labels):
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


def pairwise_agreements(grouped: dict[str, dict[str, dict[str, int]]]) -> list[bool]:
    """For each (item, annotator pair, candidate pair): same relation (better/tied/worse)?"""
    out = []
    for item, anns in sorted(grouped.items()):
        for a, b in itertools.combinations(sorted(anns), 2):
            common = sorted(set(anns[a]) & set(anns[b]))
            for x, y in itertools.combinations(common, 2):
                out.append(_sign(anns[a][x] - anns[a][y]) == _sign(anns[b][x] - anns[b][y]))
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


def _overlapping(labels: Iterable[Any]) -> dict[str, dict[str, dict[str, int]]]:
    return {item: anns for item, anns in by_item(labels).items() if len(anns) >= 2}


# One function per statistic over Label lists (the admin panel calls these by name); NaN = undefined.


def mean_kendall_tau(labels: Iterable[Any]) -> float:
    return _mean(kendall_taus(_overlapping(labels)))


def krippendorff_alpha(labels: Iterable[Any]) -> float:
    return _alpha(_overlapping(labels))


def pairwise_agreement(labels: Iterable[Any]) -> float:
    return _mean([float(x) for x in pairwise_agreements(_overlapping(labels))])


def agreement(labels: Iterable[Any]) -> Agreement:
    """Agreement statistics over the items that at least two annotators ranked."""
    labels = list(labels)
    grouped = _overlapping(labels)
    taus = kendall_taus(grouped)
    return Agreement(
        kendall_tau=_mean(taus),
        krippendorff_alpha=_alpha(grouped),
        pairwise_rate=_mean([float(x) for x in pairwise_agreements(grouped)]),
        overlapping_items=len(grouped),
        annotator_pairs=len(taus),
        per_annotator=per_annotator_counts(labels),
    )
