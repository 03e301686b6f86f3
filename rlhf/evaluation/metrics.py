"""Evaluation metrics as pure functions: diversity, win rate, confidence intervals (KL: ``rlhf.logprobs``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats


# ---------------------------------------------------------------------------------------------
# Text statistics and comparisons.


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams / all word n-grams across ``texts`` (Li et al. 2016, distinct-n).

    Words (whitespace split) rather than model tokens, so policies with any tokenizer compare.
    """
    ngrams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def win_outcomes(scores: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-prompt outcome against the baseline on the same prompt: 1 win, 0.5 tie, 0 loss."""
    if len(scores) != len(baseline):
        raise ValueError(f"win rate needs paired scores, got {len(scores)} and {len(baseline)}")
    return [1.0 if s > b else 0.5 if s == b else 0.0 for s, b in zip(scores, baseline)]


def win_rate(scores: Sequence[float], baseline: Sequence[float]) -> float:
    outcomes = win_outcomes(scores, baseline)
    return sum(outcomes) / len(outcomes) if outcomes else float("nan")


# ---------------------------------------------------------------------------------------------
# Confidence intervals.


@dataclass
class Estimate:
    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean with a Student-t interval: mean +- t_{(1+c)/2, n-1} * s / sqrt(n)."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return Estimate(mean, float("nan"), float("nan"))
    half = float(stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Estimate(mean, mean - half, mean + half)


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> Estimate:
    """Mean with a seeded percentile-bootstrap interval (scipy.stats.bootstrap).

    Percentile rather than BCa: BCa is undefined when every value is equal (e.g. all ties).
    """
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return Estimate(mean, float("nan"), float("nan"))
    if np.all(x == x[0]):
        return Estimate(mean, mean, mean)
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", rng=np.random.default_rng(seed))
    return Estimate(mean, float(res.confidence_interval.low), float(res.confidence_interval.high))


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Fraction of a text's word n-grams that repeat an earlier n-gram of the same text (0 if it has none).

    A degenerate policy loops ("great great great", "was amazing and was amazing and"); distinct-n
    pools all samples and misses a loop inside each. Words (whitespace split), as in ``distinct_n``.
    """
    words = text.split()
    ngrams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(ngrams)) / len(ngrams) if ngrams else 0.0
