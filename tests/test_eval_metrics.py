"""rlhf.evaluation.metrics on hand-made distributions and known data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from rlhf.evaluation.metrics import (
    bootstrap_interval,
    distinct_n,
    exact_kl_per_token,
    k1_per_token,
    k3_per_token,
    masked_sum,
    t_interval,
    win_outcomes,
    win_rate,
)


def _log_dists(seed: int, shape=(3, 5, 11)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).mul(2).log_softmax(-1)


def test_exact_kl_matches_torch_distributions_and_is_nonnegative():
    logp, ref = _log_dists(0), _log_dists(1)
    ours = exact_kl_per_token(logp, ref)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=logp), torch.distributions.Categorical(logits=ref)
    )
    torch.testing.assert_close(ours, expected)
    assert (ours > 0).all()
    # A hand-computed case: KL([1/2, 1/2] || [1/4, 3/4]) = 1/2 log 2 + 1/2 log(2/3).
    p, q = torch.tensor([0.5, 0.5]).log(), torch.tensor([0.25, 0.75]).log()
    assert exact_kl_per_token(p, q).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_kl_of_a_distribution_with_itself_is_exactly_zero():
    logp = _log_dists(2)
    assert (exact_kl_per_token(logp, logp.clone()) == 0).all()
    tokens = logp[..., 0]
    assert (k1_per_token(tokens, tokens) == 0).all()
    assert (k3_per_token(tokens, tokens) == 0).all()


def test_k3_is_nonnegative_and_a_function_of_k1():
    logp = torch.log(torch.rand(1000, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    ref = torch.log(torch.rand(1000, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    k1, k3 = k1_per_token(logp, ref), k3_per_token(logp, ref)
    assert (k3 >= 0).all()
    assert (k1 < 0).any()  # k1 alone can go negative; k3 never does
    # Per sample, k3 = exp(-k1) - 1 + k1: the k1 sample plus a zero-mean control variate r - 1.
    torch.testing.assert_close(k3, torch.expm1(-k1) + k1)


def test_k1_and_k3_are_unbiased_estimates_of_the_exact_kl():
    logp = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64).log()
    ref = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64).log()
    exact = exact_kl_per_token(logp, ref).item()
    samples = torch.multinomial(logp.exp(), 200_000, replacement=True, generator=torch.Generator().manual_seed(5))
    k1 = k1_per_token(logp[samples], ref[samples]).mean().item()
    k3 = k3_per_token(logp[samples], ref[samples]).mean().item()
    assert k1 == pytest.approx(exact, abs=0.01)
    assert k3 == pytest.approx(exact, abs=0.01)


def test_masked_sum_counts_only_response_tokens():
    values = torch.tensor([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_sum(values, mask).tolist() == [3.0, 8.0]


def test_distinct_n():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 words
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (the cat) twice, (cat sat), (cat ran)
    assert distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["one"], 2) == 0.0
    assert distinct_n([], 1) == 0.0


def test_win_rate_counts_ties_as_half():
    assert win_outcomes([1.0, 0.0, 0.5], [0.0, 1.0, 0.5]) == [1.0, 0.0, 0.5]
    assert win_rate([1.0, 0.0, 0.5, 0.7], [0.0, 1.0, 0.5, 0.2]) == pytest.approx(2.5 / 4)
    assert win_rate([0.3, 0.3], [0.3, 0.3]) == 0.5
    with pytest.raises(ValueError, match="paired"):
        win_rate([1.0], [1.0, 2.0])


def test_t_interval_on_known_data():
    est = t_interval([1, 2, 3, 4, 5], confidence=0.95)
    half = stats.t.ppf(0.975, 4) * math.sqrt(2.5) / math.sqrt(5)  # sample variance of 1..5 is 2.5
    assert est.mean == 3.0
    assert est.low == pytest.approx(3 - half) and est.high == pytest.approx(3 + half)
    assert est.high - est.low == pytest.approx(2 * 1.9632, abs=1e-3)  # textbook value
    wider = t_interval([1, 2, 3, 4, 5], confidence=0.99)
    assert wider.low < est.low and wider.high > est.high
    constant = t_interval([2.0, 2.0, 2.0])
    assert (constant.low, constant.high) == (2.0, 2.0)
    assert math.isnan(t_interval([1.0]).low)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(0).normal(1.0, 1.0, size=200)
    a = bootstrap_interval(values, seed=7)
    b = bootstrap_interval(values, seed=7)
    assert a == b
    assert a.low < a.mean < a.high
    t = t_interval(values)
    assert a.low == pytest.approx(t.low, abs=0.05) and a.high == pytest.approx(t.high, abs=0.05)
    ties = bootstrap_interval([0.5] * 10)
    assert (ties.mean, ties.low, ties.high) == (0.5, 0.5, 0.5)
