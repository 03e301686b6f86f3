"""Majority aggregation with tie and "both bad" votes, and K=26 rankings, computed by hand."""

import string

from rlhf.preferences.pairing import collect_pairs, ranking_pairs
from rlhf.preferences.store import Item, Label

ITEM = Item("P", "prompt", ["a", "b"], ["text a", "text b"])


def _vote(i, annotator, vote):
    ranks = {"a_better": (1, 2), "b_better": (2, 1), "tie": (1, 1), "both_bad": (1, 1)}[vote]
    return Label(i, "P", annotator, dict(zip("ab", ranks)), False, False, "", float(i), None, meta={"vote": vote})


def _pairs(labels, aggregation="majority"):
    return collect_pairs(labels, {"P": ITEM}, "best_vs_worst", aggregation)


def test_one_a_and_two_both_bad_export_nothing():
    # 3 voters; "a better" has 1 of 3, not more than half -> no pair.
    pairs, counts = _pairs([_vote(1, "x", "a_better"), _vote(2, "y", "both_bad"), _vote(3, "z", "both_bad")])
    assert pairs == [] and counts["pairs/dropped_no_majority"] == 1


def test_majority_is_more_than_half_of_all_voters():
    # 2 of 3 say a: a > b, agreement 2/3, the dissenting "both bad" is not among the annotators.
    pairs, _ = _pairs([_vote(1, "x", "a_better"), _vote(2, "y", "a_better"), _vote(3, "z", "both_bad")])
    assert [(p.chosen, p.rejected, p.annotators) for p in pairs] == [("a", "b", ["x", "y"])]
    assert abs(pairs[0].agreement - 2 / 3) < 1e-12
    # 1 a, 0 b, 1 tie: a plurality but not a majority.
    assert _pairs([_vote(1, "x", "a_better"), _vote(2, "y", "tie")])[0] == []
    # 2 b of 4 (1 a, 1 both bad): exactly half is not more than half.
    assert _pairs([_vote(1, "w", "b_better"), _vote(2, "x", "b_better"), _vote(3, "y", "a_better"),
                   _vote(4, "z", "both_bad")])[0] == []


def test_keep_all_keeps_decided_votes_only():
    pairs, _ = _pairs([_vote(1, "x", "a_better"), _vote(2, "y", "both_bad")], "keep_all")
    assert [(p.chosen, p.annotators, p.agreement) for p in pairs] == [("a", ["x"], 0.5)]


def test_26_candidates():
    ids = list(string.ascii_lowercase)
    ranks = {c: i + 1 for i, c in enumerate(ids)}
    assert ranking_pairs(ranks, ids, "best_vs_worst") == [("a", "z")]
    assert len(ranking_pairs(ranks, ids, "all_pairs")) == 26 * 25 // 2
    item = Item("K", "prompt", ids, [f"text {c}" for c in ids])
    labels = [Label(1, "K", "x", ranks, False, False, "", 1.0, None),
              Label(2, "K", "y", ranks, False, False, "", 2.0, None)]
    pairs, _ = collect_pairs(labels, {"K": item}, "all_pairs", "majority")
    assert len(pairs) == 325 and all(p.agreement == 1.0 for p in pairs)
