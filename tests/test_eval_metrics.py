"""rlhf.evaluation.metrics on hand-made distributions and known data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from rlhf.evaluation.metrics import (
    bootstrap_interval,
    distinct_n,
    t_interval,
    win_outcomes,
    win_rate,
)


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


def test_repeated_ngram_rate_counts_loops_inside_one_text():
    from rlhf.evaluation.metrics import repeated_ngram_rate

    assert repeated_ngram_rate("The food was great and the staff was kind.") == 0.0
    assert repeated_ngram_rate("great great great great great", 1) == pytest.approx(0.8)
    assert repeated_ngram_rate("a b c a b c", 3) == pytest.approx(0.25)  # 4 trigrams, "a b c" seen before once
    assert repeated_ngram_rate("too short", 3) == 0.0


def test_well_formed_reviews():
    from rlhf.tasks.reviews import generate_reviews, is_well_formed

    bodies = [r["text"][len(r["prompt"]):] for r in generate_reviews(50)]
    assert all(map(is_well_formed, bodies))  # every body of the task's own reviews
    for broken in (" Honestly standard, the\ufffd it I can't expected.Z to finish", " great great", " the food was ok.",
                   " The food was great"):
        assert not is_well_formed(broken), broken
