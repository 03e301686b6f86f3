"""Evaluation metrics as pure functions: KL to the reference, diversity, win rate, confidence intervals.

KL conventions (Schulman, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html):
with tokens y_t sampled from the policy pi and r = ref(y_t | .) / pi(y_t | .),

* exact:  sum_t KL(pi(.|x,y<t) || ref(.|x,y<t)), summed over the whole vocabulary at each step;
* k1:     sum_t log pi(y_t) - log ref(y_t)   (unbiased for the sequence KL, can be negative);
* k3:     sum_t (r - 1) - log r              (unbiased, never negative, lower variance).

All three take log-probs of the same temperature-scaled distributions (see rlhf.logprobs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import stats


# ---------------------------------------------------------------------------------------------
# KL to the reference policy.


def exact_kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """KL(pi || ref) at every position from full log-distributions ``[..., vocab]`` -> ``[...]``.

    Clamped at 0: the true value is never negative, and float rounding on near-identical
    distributions must not report a tiny negative divergence. Identical inputs give exactly 0.
    """
    return (logp.exp() * (logp - ref_logp)).sum(-1).clamp(min=0.0)


def k1_per_token(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Sampled estimator log pi(y) - log ref(y) from the log-probs of the sampled tokens."""
    return logp - ref_logp


def k3_per_token(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Sampled estimator (r - 1) - log r with r = ref(y) / pi(y); >= 0 for every sample."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim counting only ``mask == 1`` positions (the response tokens)."""
    return (values * mask).sum(-1)


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
