"""Annotator quality control: gold answers, Wilson intervals, auto-pause of a random clicker but not
of honest annotators (a seeded small version of benchmarks/qc_study.py), unpause, export without
paused annotators."""

import json

import numpy as np
import pytest

from rlhf.preferences import quality
from rlhf.preferences.quality import QCConfig, is_correct, wilson
from rlhf.preferences.simulate import label_with_qc
from rlhf.preferences.store import Item, Label, LabelStore


def _label(ranks, vote=None, skipped=False):
    return Label(1, "P", "x", ranks, skipped, False, "", 1.0, None, meta={"vote": vote} if vote else {})


def test_wilson_interval_by_hand():
    # k=8, n=10, z=1.96: centre (0.8 + 3.8416/20) / 1.38416 = 0.71674,
    # half 1.96 * sqrt(0.016 + 3.8416/400) / 1.38416 = 0.22658.
    lo, hi = wilson(8, 10, 1.96)
    assert lo == pytest.approx(0.49016, abs=1e-4) and hi == pytest.approx(0.94332, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_is_correct():
    item = Item("P", "p", ["a", "b", "c"], ["", "", ""])
    answer = quality.parse_answer(item, {"ranks": {"a": 1, "b": 3, "c": 3}})
    assert answer["ranks"] == {"a": 1, "b": 2, "c": 2}  # dense
    assert is_correct(_label({"a": 1, "b": 2, "c": 3}), answer)  # best above both worst
    assert not is_correct(_label({"a": 2, "b": 1, "c": 3}), answer)
    assert not is_correct(_label({}, skipped=True), answer)
    pair = Item("Q", "p", ["a", "b"], ["", ""])
    a_wins = quality.parse_answer(pair, {"vote": "a_better"})
    assert is_correct(_label({"a": 1, "b": 2}, "a_better"), a_wins)
    assert not is_correct(_label({"a": 1, "b": 1}, "tie"), a_wins)
    assert not is_correct(_label({"a": 1, "b": 1}, "both_bad"), a_wins)
    both_bad = quality.parse_answer(pair, {"vote": "both_bad"})
    assert is_correct(_label({"a": 1, "b": 1}, "both_bad"), both_bad)
    assert not is_correct(_label({"a": 1, "b": 1}, "tie"), both_bad)
    with pytest.raises(ValueError, match="a vote answers a pair"):
        quality.parse_answer(item, {"vote": "a_better"})


def test_gold_file(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite")
    store.add_items([Item("P", "p", ["a", "b"], ["x", "y"])])
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"item_id": "P", "vote": "b_better"}) + "\n")
    assert quality.add_gold_items(store, quality.read_gold_file(path), "file") == 1
    assert quality.gold_answers(store)["P"]["ranks"] == {"a": 2, "b": 1}
    path.write_text('{"item_id": "nope", "vote": "tie"}\n')
    with pytest.raises(ValueError, match="'nope' is not in the label DB"):
        quality.add_gold_items(store, quality.read_gold_file(path))
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        quality.read_gold_file(path)


def _study_db(tmp_path, n_items=240, seed=0):
    rng = np.random.default_rng(seed)
    items = [Item(f"i{i:04d}", f"prompt {i}", [f"i{i:04d}a", f"i{i:04d}b"], ["A", "B"]) for i in range(n_items)]
    rewards = {it.item_id: list(rng.uniform(-1, 1, size=2)) for it in items}
    store = LabelStore(tmp_path / "study.sqlite")
    store.add_items(items)
    quality.add_gold_items(store, quality.gold_from_rewards(items, rewards, margin=0.8), source="simulated")
    return store, rewards


@pytest.mark.timeout(60)
def test_random_clicker_paused_within_20_honest_annotators_not(tmp_path):
    store, rewards = _study_db(tmp_path)
    qc = QCConfig()
    rng = np.random.default_rng(1)
    careless = [label_with_qc(store, f"rand-{i}", rewards, qc, 3, 40, rng, careless=True) for i in range(3)]
    assert all(r["paused_at"] is not None and r["paused_at"] <= 20 for r in careless), careless
    honest = [label_with_qc(store, f"honest-{i}", rewards, qc, 3, 60, rng, flip_rate=0.25) for i in range(5)]
    assert all(r["paused_at"] is None and r["labels"] == 60 for r in honest), honest
    assert quality.paused_annotators(store) == {"rand-0", "rand-1", "rand-2"}
    table = {row["annotator"]: row for row in quality.accuracy(store, qc)}
    assert table["rand-0"]["paused"] and table["rand-0"]["high"] < qc.min_accuracy
    assert all(table[f"honest-{i}"]["accuracy"] > 0.6 for i in range(5))

    # Paused: no more items. Unpaused by an admin: items again, and the old gold answers
    # no longer count toward the next auto-pause.
    assert quality.choose_item(store, "rand-0", 3, qc) is None
    quality.unpause(store, "rand-0", by="alice")
    assert not quality.is_paused(store, "rand-0")
    assert quality.choose_item(store, "rand-0", 3, qc) is not None
    assert quality.after_label(store, "rand-0", qc) is False


def test_onboarding_items_are_gold_then_mixed(tmp_path):
    store, rewards = _study_db(tmp_path, n_items=120)
    qc = QCConfig(onboarding=5, mix_rate=0.2)
    gold = set(quality.gold_answers(store))
    rng = np.random.default_rng(0)
    label_with_qc(store, "h", rewards, qc, 1, 60, rng, flip_rate=0.0)
    order = [lab.item_id in gold for lab in store.history("h")]
    assert all(order[:5])
    mixed = sum(order[5:]) / len(order[5:])
    assert 0.05 < mixed < 0.45  # ~20 %, not every item and not none


def test_export_can_exclude_paused_annotators(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from annotation_fixtures import make_candidates_artifact

    from annotation_ui import export
    from rlhf.artifacts import open_artifact
    from rlhf.preferences.export import candidate_items

    _, items = candidate_items(make_candidates_artifact(tmp_path / "candidates", num_prompts=2))
    store = LabelStore(tmp_path / "labels.sqlite", overlap=2)
    store.add_items(items)
    for it in items:
        store.submit("good", it.item_id, {c: i + 1 for i, c in enumerate(it.candidate_ids)})
        store.submit("bad", it.item_id, {c: 3 - i for i, c in enumerate(it.candidate_ids)})
    quality.pause(store, "bad", "test")
    args = ["--candidates", str(tmp_path / "candidates"), "--db", str(tmp_path / "labels.sqlite"),
            "--aggregation", "keep_all", "--test-fraction", "0"]
    export.main(args + ["--out", str(tmp_path / "all")])
    export.main(args + ["--out", str(tmp_path / "good"), "--exclude-paused"])
    assert open_artifact(tmp_path / "all", "preferences").metrics["annotators"] == 2
    good = open_artifact(tmp_path / "good", "preferences")
    assert good.metrics["annotators"] == 1 and list(good.metrics["per_annotator"]) == ["good"]
