"""Agreement statistics against values computed by hand on a small fixture.

Fixture (ranks, 1 = best; candidate order a, b, c on item X and d, e, f on item Y):

    X: A = (1, 2, 3)   B = (1, 3, 2)   C = (1, 1, 2)
    Y: A = (1, 2, 3)   B = (3, 2, 1)   C skipped
    Z: A = (1, 2, 3)                    C flagged (3, 2, 1): kept by default, left out with drop_flagged

The hand-computed values below are with drop_flagged=True (Z then has one label only);
test_flagged_labels_count_by_default adds Z back.
"""

import math

import pytest

from rlhf.preferences.agreement import agreement, per_annotator_counts
from rlhf.preferences.store import Label


def _label(i, item, annotator, ranks, skipped=False, flagged=False):
    return Label(i, item, annotator, ranks, skipped, flagged, "", float(i), None)


def _ranks(item, ranks):
    names = {"X": "abc", "Y": "def", "Z": "ghi"}[item]
    return dict(zip(names, ranks))


FIXTURE = [
    _label(1, "X", "A", _ranks("X", (1, 2, 3))),
    _label(2, "X", "B", _ranks("X", (1, 3, 2))),
    _label(3, "X", "C", _ranks("X", (1, 1, 2))),
    _label(4, "Y", "A", _ranks("Y", (1, 2, 3))),
    _label(5, "Y", "B", _ranks("Y", (3, 2, 1))),
    _label(6, "Y", "C", {}, skipped=True),
    _label(7, "Z", "A", _ranks("Z", (1, 2, 3))),
    _label(8, "Z", "C", _ranks("Z", (3, 2, 1)), flagged=True),
]


def test_mean_pairwise_kendall_tau_b():
    # tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = 3 candidate pairs, n1/n2 = pairs tied in x/y.
    # X, A-B: (a,b) conc, (a,c) conc, (b,c) disc -> (2 - 1) / sqrt(3 * 3) = 1/3
    # X, A-C: (a,b) tied in C, (a,c) conc, (b,c) conc -> (2 - 0) / sqrt(3 * 2) = 2/sqrt(6)
    # X, B-C: (a,b) tied in C, (a,c) conc, (b,c) disc -> (1 - 1) / sqrt(3 * 2) = 0
    # Y, A-B: reversed -> -1
    expected = (1 / 3 + 2 / math.sqrt(6) + 0 - 1) / 4  # = 0.037457
    result = agreement(FIXTURE, drop_flagged=True)
    assert result.kendall_tau == pytest.approx(expected)
    assert result.kendall_tau == pytest.approx(0.037457, abs=1e-6)
    assert result.annotator_pairs == 4
    assert result.overlapping_items == 2  # Z has one usable label only


def test_pairwise_agreement_rate():
    # Same relation (<, =, >) per candidate pair:
    # X A-B: ab same, ac same, bc differ -> 2/3;  X A-C: ab differ (C ties), ac, bc same -> 2/3
    # X B-C: ab differ, ac same, bc differ -> 1/3;  Y A-B: all three differ -> 0/3
    assert agreement(FIXTURE, drop_flagged=True).pairwise_rate == pytest.approx(5 / 12)


def test_krippendorff_alpha_ordinal():
    # Units (item, candidate) and their values: Xa 1,1,1  Xb 2,3,1  Xc 3,2,2  Yd 1,3  Ye 2,2  Yf 3,1.
    # Coincidences o_ck = sum_u pairs(c,k) / (m_u - 1):
    #   o11 = 3 (Xa); o12 = .5 (Xb); o13 = .5 (Xb) + 1 (Yd) + 1 (Yf) = 2.5
    #   o22 = 1 (Xc) + 2 (Ye) = 3; o23 = .5 (Xb) + 1 (Xc) = 1.5; o33 = 0
    # n1 = 6, n2 = 5, n3 = 4, n = 15. Ordinal delta^2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2:
    #   d12 = 5.5^2 = 30.25, d23 = 4.5^2 = 20.25, d13 = (15 - 5)^2 = 100
    # D_o = 2/15 * (.5 * 30.25 + 2.5 * 100 + 1.5 * 20.25) = 2/15 * 295.5 = 39.4
    # D_e = 2/(15 * 14) * (6*5 * 30.25 + 6*4 * 100 + 5*4 * 20.25) = 2/210 * 3712.5 = 35.357...
    # alpha = 1 - D_o / D_e = 1 - 8274/7425 = -849/7425
    assert agreement(FIXTURE, drop_flagged=True).krippendorff_alpha == pytest.approx(-849 / 7425)


def test_per_annotator_counts():
    assert per_annotator_counts(FIXTURE, drop_flagged=True) == {
        "A": {"labels": 3, "skipped": 0, "flagged": 0, "overlapping": 2},
        "B": {"labels": 2, "skipped": 0, "flagged": 0, "overlapping": 2},
        "C": {"labels": 1, "skipped": 1, "flagged": 1, "overlapping": 1},
    }


def test_perfect_agreement_and_no_overlap():
    same = [_label(1, "X", "A", _ranks("X", (1, 2, 3))), _label(2, "X", "B", _ranks("X", (1, 2, 3))),
            _label(3, "Y", "A", _ranks("Y", (2, 1, 1))), _label(4, "Y", "B", _ranks("Y", (2, 1, 1)))]
    result = agreement(same)
    assert result.kendall_tau == pytest.approx(1.0)
    assert result.pairwise_rate == 1.0
    assert result.krippendorff_alpha == pytest.approx(1.0)

    alone = agreement([_label(1, "X", "A", _ranks("X", (1, 2, 3)))])
    assert all(math.isnan(v) for v in (alone.kendall_tau, alone.krippendorff_alpha, alone.pairwise_rate))
    metrics = alone.metrics()
    assert metrics["agreement/kendall_tau"] is None and metrics["agreement/overlapping_items"] == 0


def test_per_statistic_functions_used_by_the_admin_panel():
    from rlhf.preferences.agreement import krippendorff_alpha, mean_kendall_tau, pairwise_agreement

    no_flags = [lab for lab in FIXTURE if not lab.flagged]
    assert mean_kendall_tau(no_flags) == pytest.approx((1 / 3 + 2 / math.sqrt(6) - 1) / 4)
    assert krippendorff_alpha(no_flags) == pytest.approx(-849 / 7425)
    assert pairwise_agreement(no_flags) == pytest.approx(5 / 12)


def test_flagged_labels_count_by_default():
    # Z: A (1,2,3) vs C (3,2,1): tau -1 and all three candidate pairs disagree.
    result = agreement(FIXTURE)
    assert result.overlapping_items == 3 and result.annotator_pairs == 5
    assert result.kendall_tau == pytest.approx((1 / 3 + 2 / math.sqrt(6) + 0 - 1 - 1) / 5)
    assert result.pairwise_rate == pytest.approx(5 / 15)


def test_dense_rank_normalisation():
    from rlhf.preferences.agreement import dense_ranks

    assert dense_ranks({"a": 1, "b": 1, "c": 3}) == {"a": 1, "b": 1, "c": 2}
    assert dense_ranks({"a": 4, "b": 2, "c": 2}) == {"a": 2, "b": 1, "c": 1}
    # The same ranking written 1,1,3 by one annotator and 1,1,2 by another agrees perfectly;
    # without normalisation ordinal alpha would see a 3-vs-2 disagreement on candidate c.
    gappy = [_label(1, "X", "A", _ranks("X", (1, 1, 3))), _label(2, "X", "B", _ranks("X", (1, 1, 2))),
             _label(3, "Y", "A", _ranks("Y", (1, 2, 3))), _label(4, "Y", "B", _ranks("Y", (1, 2, 3)))]
    assert agreement(gappy).krippendorff_alpha == pytest.approx(1.0)
    assert agreement(gappy).pairwise_rate == 1.0


def _pair_label(i, item, annotator, a, b, vote):
    return Label(i, item, annotator, {f"{item}a": a, f"{item}b": b}, False, False, "", float(i), None,
                 meta={"vote": vote})


def test_pairs_and_kway_items_are_reported_separately():
    # K-way: X and Y of the fixture without the flagged label (alpha -849/7425 by hand above).
    # Pairs P, Q: A and B agree on both (a better on P, b better on Q) -> pair alpha 1, pair rate 1.
    pairs = [_pair_label(11, "P", "A", 1, 2, "a_better"), _pair_label(12, "P", "B", 1, 2, "a_better"),
             _pair_label(13, "Q", "A", 2, 1, "b_better"), _pair_label(14, "Q", "B", 2, 1, "b_better")]
    result = agreement(FIXTURE + pairs, drop_flagged=True)
    assert result.kway.krippendorff_alpha == pytest.approx(-849 / 7425)
    assert result.kway.overlapping_items == 2 and result.kway.pairwise_rate == pytest.approx(5 / 12)
    assert result.pair.krippendorff_alpha == pytest.approx(1.0) and result.pair.pairwise_rate == 1.0
    assert result.pair.overlapping_items == 2
    assert math.isnan(result.krippendorff_alpha)  # one alpha over two rank scales is not reported
    m = result.metrics()
    assert m["agreement/pair/krippendorff_alpha"] == pytest.approx(1.0)
    assert m["agreement/kway/krippendorff_alpha"] == pytest.approx(-849 / 7425)


def test_both_bad_is_its_own_relation():
    # Both annotators said "both bad": agree. "both bad" vs a plain tie: disagree.
    same = [_pair_label(1, "P", "A", 1, 1, "both_bad"), _pair_label(2, "P", "B", 1, 1, "both_bad")]
    assert agreement(same).pairwise_rate == 1.0
    mixed = [_pair_label(1, "P", "A", 1, 1, "both_bad"), _pair_label(2, "P", "B", 1, 1, "tie")]
    assert agreement(mixed).pairwise_rate == 0.0


def test_26_candidates():
    import string

    ids = list(string.ascii_lowercase)
    a = {c: i + 1 for i, c in enumerate(ids)}
    b = {c: 26 - i for i, c in enumerate(ids)}
    result = agreement([Label(1, "X", "A", a, False, False, "", 1.0, None), Label(2, "X", "B", a, False, False, "", 2.0, None),
                        Label(3, "Y", "A", a, False, False, "", 3.0, None), Label(4, "Y", "B", b, False, False, "", 4.0, None)])
    assert result.kendall_tau == pytest.approx((1 - 1) / 2) and result.pairwise_rate == pytest.approx(0.5)
    assert result.kway.overlapping_items == 2
