"""LabelStore: append-only revisions, idempotent submits, N-way assignment, validation, durability."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from rlhf.preferences.store import Item, LabelStore, items_from_candidates


def _items(n: int = 4, k: int = 3) -> list[Item]:
    return [Item(f"i{n_}", f"prompt {n_}", [f"i{n_}c{c}" for c in range(k)], [f"text {c}" for c in range(k)])
            for n_ in range(n)]


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite", overlap=3)  # several annotators per item without leases
    s.add_items(_items())
    return s


def test_add_items_is_idempotent(store):
    assert store.add_items(_items()) == 0
    assert store.add_items(_items(5)) == 1
    assert [i.item_id for i in store.items()] == ["i0", "i1", "i2", "i3", "i4"]
    assert store.item("i2").candidate_ids == ["i2c0", "i2c1", "i2c2"]
    with pytest.raises(KeyError):
        store.item("nope")


def test_revision_appends_a_superseding_row(store):
    first = store.submit("alice", "i0", {"i0c0": 1, "i0c1": 2, "i0c2": 3})
    second = store.submit("alice", "i0", {"i0c0": 2, "i0c1": 1, "i0c2": 1}, rationale="changed my mind")
    assert second.supersedes == first.label_id
    assert [lab.label_id for lab in store.labels()] == [second.label_id]
    rows = store.labels(latest_only=False)
    assert [(r.label_id, r.ranks) for r in rows] == [
        (first.label_id, {"i0c0": 1, "i0c1": 2, "i0c2": 3}),  # the original is never overwritten
        (second.label_id, {"i0c0": 2, "i0c1": 1, "i0c2": 1}),
    ]
    assert store.counts_by_annotator()[0]["revisions"] == 1
    # history (what "back" walks) keeps first-labelled order when an older item is revised
    store.submit("alice", "i1", {"i1c0": 1, "i1c1": 2, "i1c2": 3})
    store.submit("alice", "i0", {"i0c0": 3, "i0c1": 2, "i0c2": 1})
    assert [lab.item_id for lab in store.history("alice")] == ["i0", "i1"]


def test_request_id_is_idempotent(store):
    ranks = {"i1c0": 1, "i1c1": 1, "i1c2": 2}
    a = store.submit("bob", "i1", ranks, request_id="req-1")
    b = store.submit("bob", "i1", ranks, request_id="req-1")
    assert a == b
    assert len(store.labels(latest_only=False)) == 1
    with pytest.raises(ValueError, match="already used"):
        store.submit("carol", "i1", ranks, request_id="req-1")


def test_concurrent_submits_with_same_request_id_make_one_row(store):
    ranks = {"i1c0": 1, "i1c1": 2, "i1c2": 3}
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.submit("bob", "i1", ranks, request_id="x")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({r.label_id for r in results}) == 1 and len(results) == 8
    assert len(store.labels(latest_only=False)) == 1


@pytest.mark.parametrize(
    "ranks, message",
    [
        ({"i0c0": 1, "i0c1": 2}, "rank every candidate"),
        ({"i0c0": 1, "i0c1": 2, "i0c2": 0}, "ranks are integers 1..3"),
        ({"i0c0": 1, "i0c1": 2, "i0c2": 4}, "ranks are integers 1..3"),
        ({"i0c0": 1, "i0c1": 2, "i0c2": "x"}, "must be an integer"),
        ({"i0c0": 1, "i0c1": 2, "i0c2": 1.5}, "ranks are integers"),
        ({"i0c0": 1, "i0c1": 2, "i0c2": 3, "bogus": 1}, "unknown candidate id"),
    ],
)
def test_validation_errors(store, ranks, message):
    with pytest.raises(ValueError, match=message):
        store.submit("alice", "i0", ranks)
    assert store.labels(latest_only=False) == []


def test_skip_needs_no_ranking_and_empty_annotator_is_refused(store):
    lab = store.submit("alice", "i0", {}, skipped=True, flagged=True, rationale="unsafe")
    assert lab.skipped and lab.flagged and store.flagged() == [lab]
    with pytest.raises(ValueError, match="sign in"):
        store.submit("", "i0", {"i0c0": 1, "i0c1": 2, "i0c2": 3})


def test_assignment_overlap_and_never_twice(store):
    overlap = 2
    seen: dict[str, list[str]] = {}
    for rnd in range(6):
        for ann in ["a", "b", "c"]:
            item = store.next_item(ann, overlap)
            if item is None:
                continue
            assert store.next_item(ann, overlap) == item  # a reload shows the same task (lease)
            seen.setdefault(item.item_id, []).append(ann)
            store.submit(ann, item.item_id, {c: 1 for c in item.candidate_ids})
    # every item got exactly `overlap` distinct annotators, none twice
    assert sorted(seen) == ["i0", "i1", "i2", "i3"]
    for item_id, anns in seen.items():
        assert len(anns) == overlap == len(set(anns)), (item_id, anns)
    assert all(store.next_item(a, overlap) is None for a in "abc")
    assert store.progress("a", overlap)["done_items"] == 4
    assert store.progress("a", overlap)["total_items"] == 4
    assert sum(store.progress(a, overlap)["mine"] for a in "abc") == 8


def test_leases_spread_concurrent_annotators_and_skips_do_not_count(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", lease_seconds=60)
    store.add_items(_items(2))
    assert store.next_item("a", 1).item_id == "i0"
    assert store.next_item("b", 1).item_id == "i1"  # i0 is leased to a
    assert store.next_item("c", 1) is None
    store.submit("a", "i0", {}, skipped=True)  # a skip frees the slot, but a never sees i0 again
    assert store.next_item("c", 1).item_id == "i0"
    assert store.next_item("a", 1) is None

    short = LabelStore(tmp_path / "short.sqlite", lease_seconds=0)  # leases expire at once
    short.add_items(_items(1))
    assert short.next_item("a", 1).item_id == "i0"
    assert short.next_item("b", 1).item_id == "i0"  # a's lease lapsed, so the slot is free again


def test_drafts_and_durability_across_reopen(tmp_path):
    path = tmp_path / "labels.sqlite"
    store = LabelStore(path)
    store.add_items(_items(2))
    store.save_draft("alice", "i0", {"ranks": {"i0c0": 1}})
    store.save_draft("alice", "i0", {"ranks": {"i0c0": 2}})
    lab = store.submit("alice", "i1", {"i1c0": 3, "i1c1": 2, "i1c2": 1}, request_id="r")
    store.close()

    # a second, independent connection (another process would see the same) sees committed rows
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 1
    raw.close()

    again = LabelStore(path)
    assert again.labels() == [lab]
    assert again.load_draft("alice", "i0") == {"ranks": {"i0c0": 2}}
    assert again.load_draft("alice", "i1") is None  # submitting clears the draft
    assert again.submit("alice", "i1", lab.ranks, request_id="r") == lab
    assert again.history("alice") == [lab]


def test_items_from_candidates(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_list([{"prompt_id": 7, "prompt": "p", "candidate_ids": ["x", "y"], "candidates": ["A", "B"]}])
    assert items_from_candidates(ds) == [Item("7", "p", ["x", "y"], ["A", "B"])]
    with pytest.raises(ValueError, match="lacks column"):
        items_from_candidates(Dataset.from_list([{"prompt": "p"}]))


def test_users_from_yaml_json_and_env(tmp_path):
    import json

    from annotation_ui.users import add_user, load_users

    add_user(tmp_path / "u.yaml", "alice", "pw1", admin=True)
    add_user(tmp_path / "u.yaml", "bob", "pw2")
    users = load_users(tmp_path / "u.yaml", env={"ANNOTATION_USERS": "carol:pw3", "ANNOTATION_ADMINS": "carol"})
    assert users.check("alice", "pw1") and users.check("bob", "pw2") and users.check("carol", "pw3")
    assert not users.check("alice", "pw2") and not users.check("mallory", "pw1")
    assert users.admins == {"alice", "carol"} and not users.is_admin("bob")
    add_user(tmp_path / "u.json", "dave", "pw4")
    assert set(json.loads((tmp_path / "u.json").read_text())["users"]) == {"dave"}
    assert load_users(tmp_path / "u.json", env={}).check("dave", "pw4")
    assert not load_users(None, env={}).enabled
    with pytest.raises(ValueError, match="name:password"):
        load_users(None, env={"ANNOTATION_USERS": "nopassword"})


def test_admin_report_counts_agreement_and_flags(store):
    from annotation_ui.admin import report_html, report_text

    store.submit("alice", "i0", {"i0c0": 1, "i0c1": 2, "i0c2": 3})
    store.submit("bob", "i0", {"i0c0": 1, "i0c1": 2, "i0c2": 3})
    store.submit("bob", "i1", {}, skipped=True, flagged=True, rationale="<b>rude</b> | spam")
    text = report_text(store, overlap=2)
    assert "items done: 1/4" in text and "flagged items: 1" in text
    page = report_html(store, overlap=2)
    assert "<td>&lt;b&gt;rude&lt;/b&gt; | spam</td>" in page  # escaped: shown as text, in full
    assert "<td>pairwise_agreement</td><td>n/a</td><td>1.000</td>" in page  # pairs n/a, K-way 1.0
