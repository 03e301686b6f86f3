"""Bradley-Terry ratings from pairwise votes, on an Elo-like scale, with bootstrap intervals.

As Chatbot Arena (FastChat ``rating_systems.py``, Chiang et al. 2024): the maximum-likelihood
Bradley-Terry fit, P(i beats j) = sigmoid(theta_i - theta_j), with a tie counted as half a win for
each side; ratings are 1000 + 400/ln(10) * (theta - theta_anchor), so one policy (the SFT model)
sits at 1000 and 400 points mean 10:1 odds. Intervals: percentiles of the fit on votes resampled
with replacement. Every bootstrap round is fitted at once (batched Newton), so 1,000 rounds of a
few hundred votes take well under a second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

SCALE = 400.0 / math.log(10.0)  # rating points per unit of log-strength (Elo's 400 per factor 10)
BASE = 1000.0
# Score of the LEFT response for each outcome: ties (also "both bad") are half a win, as in FastChat.
OUTCOME_SCORE = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}


def outcome_scores(outcomes: Sequence[str]) -> np.ndarray:
    try:
        return np.array([OUTCOME_SCORE[o] for o in outcomes], dtype=float)
    except KeyError as exc:
        raise ValueError(f"unknown vote outcome {exc.args[0]!r}; valid: {', '.join(OUTCOME_SCORE)}") from None


def win_matrices(left: np.ndarray, right: np.ndarray, score: np.ndarray, n: int,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """W[..., i, j] = (weighted) wins of i over j, ties half; ``weights`` [B, votes] gives B matrices."""
    # Each vote adds `score` to W[left, right] and `1 - score` to W[right, left]: one matrix product.
    per_vote = np.zeros((len(left), n * n))
    rows = np.arange(len(left))
    np.add.at(per_vote, (rows, left * n + right), score)
    np.add.at(per_vote, (rows, right * n + left), 1.0 - score)
    w = np.ones((1, len(left))) if weights is None else np.atleast_2d(weights)
    wins = (w @ per_vote).reshape(-1, n, n)
    return wins[0] if weights is None else wins


def fit_bradley_terry(wins: np.ndarray, l2: float = 1e-3, iters: int = 100, tol: float = 1e-9) -> np.ndarray:
    """Log-strengths theta (mean 0) maximising sum_ij W_ij log sigmoid(theta_i - theta_j) - l2/2 |theta|^2.

    ``wins`` is [n, n] or a batch [B, n, n]. The tiny L2 term only keeps a policy that never won
    (or never lost) finite; it is negligible next to any real vote. Newton's method with steps
    capped at 1 nat: the objective is concave, so this converges in a few dozen iterations at most.
    """
    single = wins.ndim == 2
    w = wins[None] if single else wins
    b, n, _ = w.shape
    games = w + w.transpose(0, 2, 1)
    wins_total = w.sum(2)
    theta = np.zeros((b, n))
    eye = np.eye(n)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))  # P(i beats j)
        grad = wins_total - (games * p).sum(2) - l2 * theta
        curv = games * p * (1.0 - p)
        hess = curv - eye * curv.sum(2)[:, :, None] - l2 * eye  # negative definite
        step = -np.linalg.solve(hess, grad[..., None])[..., 0]
        biggest = np.abs(step).max(1, keepdims=True)
        step *= np.minimum(1.0, 1.0 / np.maximum(biggest, 1e-12))
        theta += step
        if biggest.max() < tol:
            break
    theta -= theta.mean(1, keepdims=True)
    return theta[0] if single else theta


def to_rating(theta: np.ndarray, anchor: int) -> np.ndarray:
    """Elo-like points with policy ``anchor`` at 1000 (works on [n] and [B, n])."""
    return BASE + SCALE * (theta - theta[..., anchor : anchor + 1])


@dataclass
class Rating:
    """One leaderboard row."""

    policy: str
    rating: float
    low: float
    high: float
    votes: int
    rank: int  # 1 + number of policies whose interval lies entirely above this one (FastChat's rule)

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_strengths(left: np.ndarray, right: np.ndarray, score: np.ndarray, n: int,
                        rounds: int = 1000, seed: int = 0) -> np.ndarray:
    """[rounds, n] mean-centred log-strengths, each fitted on the votes resampled with replacement."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(left), np.full(len(left), 1.0 / len(left)), size=rounds)
    return fit_bradley_terry(win_matrices(left, right, score, n, weights=counts))


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - confidence) / 2 * 100
    return np.percentile(samples, tail, axis=0), np.percentile(samples, 100 - tail, axis=0)


def leaderboard(names: Sequence[str], left: Sequence[int], right: Sequence[int], outcomes: Sequence[str],
                anchor: str, rounds: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[Rating]:
    """Rows sorted best first: point rating, ``confidence`` bootstrap interval, votes, rank."""
    names = list(names)
    if anchor not in names:
        raise ValueError(f"anchor policy '{anchor}' is not among the rated policies: {', '.join(names)}")
    if not len(outcomes):
        raise ValueError("no votes to rate: collect or simulate votes first")
    left, right, score = np.asarray(left), np.asarray(right), outcome_scores(outcomes)
    a, n = names.index(anchor), len(names)
    point = to_rating(fit_bradley_terry(win_matrices(left, right, score, n)), a)
    if rounds > 0:
        low, high = percentile_interval(to_rating(bootstrap_strengths(left, right, score, n, rounds, seed), a),
                                        confidence)
    else:
        low = high = point
    votes = np.bincount(left, minlength=n) + np.bincount(right, minlength=n)
    rows = [Rating(names[i], float(point[i]), float(low[i]), float(high[i]), int(votes[i]),
                   1 + int((low > high[i]).sum())) for i in range(n)]
    return sorted(rows, key=lambda r: -r.rating)

