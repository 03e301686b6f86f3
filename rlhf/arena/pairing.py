"""Which two policies to show next, how many votes one voter may give, and which voters to distrust.

Active pairing spends votes where the leaderboard is least settled: the pair whose bootstrap rating
distributions overlap most (Chatbot Arena samples pairs by a similar uncertainty-reduction weight, Chiang et al.
2024, sec. 5). Uniform pairing is the plain alternative. The outlier check follows FastChat's
``outlier_detect`` idea: a voter whose votes are much less likely under the Bradley-Terry model
fitted on everyone else's votes is random or adversarial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from rlhf.arena.ratings import fit_bradley_terry, outcome_scores, win_matrices

PAIRINGS = ("active", "uniform")


def all_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def order_overlap(samples: np.ndarray) -> np.ndarray:
    """[n, n] overlap of the bootstrap rating distributions of i and j: the share of rounds that order
    them the minority way, min(P(i > j), P(j > i)) (0.5 = a coin flip, 0 = settled).

    Measured on the joint rounds rather than on each policy's marginal interval: two policies
    compared only with each other have wide intervals that never shrink on the shared scale, yet
    their order is settled; the marginal overlap would keep serving that pair.
    """
    above = (samples[:, :, None] > samples[:, None, :]).mean(0)
    return np.minimum(above, above.T)


def choose_pair(n: int, rng: np.random.Generator, pairing: str = "active",
                overlap: np.ndarray | None = None) -> tuple[int, int]:
    """Two distinct policy indices, in random left/right order.

    ``active`` draws a pair with probability proportional to its ``overlap`` (e.g. ``order_overlap``
    of bootstrap ratings), so the most-overlapping pairs get most votes and settled pairs (overlap 0)
    none; uniform when there is no overlap yet (no votes) or every pair is settled. Drawing rather
    than always taking the top pair: in benchmarks/arena_votes.py the argmax kept serving one
    near-equal pair and needed more votes (docs/arena.md).
    """
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing='{pairing}' is not one of: {', '.join(PAIRINGS)}")
    pairs = all_pairs(n)
    if pairing == "uniform" or overlap is None:
        i, j = pairs[rng.integers(len(pairs))]
    else:
        scores = np.array([overlap[i, j] for i, j in pairs])
        if scores.sum() > 0:
            i, j = pairs[rng.choice(len(pairs), p=scores / scores.sum())]
        else:
            i, j = pairs[rng.integers(len(pairs))]
    return (i, j) if rng.random() < 0.5 else (j, i)


def open_voters(votes_given: Mapping[str, int], voters: Sequence[str], cap: int | None) -> list[str]:
    """The voters who may still vote: fewer than ``cap`` votes given so far (None = no cap)."""
    return [v for v in voters if cap is None or votes_given.get(v, 0) < cap]


@dataclass
class VoterCheck:
    voter: str
    votes: int
    z: float  # standardised log-likelihood of the voter's votes; very negative = unlike the model
    outlier: bool


def outlier_voters(n: int, left: Sequence[int], right: Sequence[int], outcomes: Sequence[str],
                   voters: Sequence[str], threshold: float = 3.0, min_votes: int = 10) -> list[VoterCheck]:
    """Score each voter's votes under the Bradley-Terry fit of all OTHER voters' votes.

    For a vote with model probability p that the left response wins, a model-consistent voter's
    log-likelihood has mean p log p + (1-p) log(1-p) and variance p(1-p) log(p/(1-p))^2; summed
    over the voter's decisive votes this gives a z-score. A voter with z < -threshold (and at least
    ``min_votes`` votes) is flagged. Ties carry no direction and are skipped.
    """
    left, right, voters = np.asarray(left), np.asarray(right), np.asarray(voters)
    score = outcome_scores(outcomes)
    checks = []
    for voter in dict.fromkeys(voters.tolist()):
        own = voters == voter
        others = ~own
        theta = fit_bradley_terry(win_matrices(left[others], right[others], score[others], n))
        decisive = own & (score != 0.5)
        p = 1.0 / (1.0 + np.exp(-(theta[left[decisive]] - theta[right[decisive]])))
        p = np.clip(p, 1e-6, 1 - 1e-6)
        s = score[decisive]
        loglik = (s * np.log(p) + (1 - s) * np.log(1 - p)).sum()
        mean = (p * np.log(p) + (1 - p) * np.log(1 - p)).sum()
        var = (p * (1 - p) * np.log(p / (1 - p)) ** 2).sum()
        z = float((loglik - mean) / math.sqrt(var)) if var > 0 else 0.0
        checks.append(VoterCheck(voter, int(own.sum()), z, bool(own.sum() >= min_votes and z < -threshold)))
    return checks
