"""Export of rankings to TRL preference pairs: pair counts per policy, ties, metadata, bad inputs.

Fixture rankings (ranks of candidates c0, c1, c2; 1 = best):

    p000: A (1,2,3)  B (1,3,2)  C (2,1,3)
    p001: A (1,1,2)  B (2,1,1)
    p002: A (1,1,1)                       all tied: no pair under any policy
    p003: A skipped  B flagged (1,2,3)    the flagged ranking counts (guidelines: "rank as usual")
    p004: A (3,2,1)  B (1,2,3)            opposite rankings

Majority = more than half of everyone who ranked both candidates (a tie is a vote for neither).
"""

import json
import sqlite3

import pytest
from datasets import load_from_disk

from annotation_fixtures import make_candidates_artifact
from annotation_ui import export
from rlhf.artifacts import ArtifactError, open_artifact
from rlhf.preferences.artifact import write_preferences
from rlhf.preferences.export import build_export, candidate_items, db_state, export_preferences, open_label_db
from rlhf.preferences.store import Item, LabelStore

RANKINGS = {
    "p000": {"A": (1, 2, 3), "B": (1, 3, 2), "C": (2, 1, 3)},
    "p001": {"A": (1, 1, 2), "B": (2, 1, 1)},
    "p002": {"A": (1, 1, 1)},
    "p004": {"A": (3, 2, 1), "B": (1, 2, 3)},
}


def _ranks(item_id, ranks):
    return {f"{item_id}-c{c}": r for c, r in enumerate(ranks)}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    candidates, items = candidate_items(make_candidates_artifact(root / "candidates", num_prompts=6))
    store = LabelStore(root / "labels.sqlite", overlap=3)  # up to three annotators per item, no leases
    store.add_items(items)
    for item_id, by_annotator in RANKINGS.items():
        for annotator, ranks in by_annotator.items():
            store.submit(annotator, item_id, _ranks(item_id, ranks))
    store.submit("A", "p003", {}, skipped=True)
    store.submit("B", "p003", _ranks("p003", (1, 2, 3)), flagged=True, rationale="off-topic")
    return root, candidates, items, store


# Hand-derived (see the module docstring):
# best_vs_worst per ranking: p000 A c0>c2, B c0>c1, C c1>c2; p001 A c0>c2 (first of the tied best),
#   B c1>c0; p003 B c0>c2 (flagged); p004 A c2>c0, B c0>c2  -> keep_all 8 rows.
#   majority: p000 c0>c2 (3 of 3), c0>c1 (2 of 3), c1>c2 (2 of 3); p001 c0|c2 1 of 2 each way dropped,
#   c1>c0 1 of 2 (A tied) dropped; p003 c0>c2 (1 of 1); p004 1 of 2 dropped -> 4 rows, 3 dropped.
# all_pairs: p000 3 per annotator (9); p001 A 2 + B 2 (one tie each); p003 3; p004 3 + 3 -> keep_all 22.
#   majority: p000 3; p001 c0|c2, c1|c2 (B tied), c0|c1 (A tied) all 1 of 2: dropped; p003 3; p004 3 dropped
#   -> 6 rows, 6 dropped.
@pytest.mark.parametrize("pairing, aggregation, rows, dropped", [
    ("best_vs_worst", "keep_all", 8, 0),
    ("best_vs_worst", "majority", 4, 3),
    ("all_pairs", "keep_all", 22, 0),
    ("all_pairs", "majority", 6, 6),
])
def test_pair_counts_per_policy(labelled, pairing, aggregation, rows, dropped):
    _, _, items, store = labelled
    data, metrics = build_export(store, items, pairing, aggregation, test_fraction=0.0)
    assert len(data["train"]) == rows and len(data["test"]) == 0
    assert metrics["pairs/total"] == rows
    assert metrics["pairs/dropped_no_majority"] == dropped
    assert metrics["labels/skipped"] == 1 and metrics["labels/flagged"] == 1
    assert metrics["labels/usable"] == 9 and metrics["rankings/all_tied"] == 1
    assert "p002" not in data["train"]["prompt_id"] and "p003" in data["train"]["prompt_id"]


def test_flagged_labels_keep_their_ranking_unless_dropped(labelled):
    _, _, items, store = labelled
    kept = export_preferences(store, items, "all_pairs", "keep_all", test_fraction=0.0)["train"]
    assert sorted(r["prompt_id"] for r in kept).count("p003") == 3  # B's flagged (1,2,3): 3 pairs
    data, metrics = build_export(store, items, "all_pairs", "keep_all", test_fraction=0.0, drop_flagged=True)
    assert "p003" not in data["train"]["prompt_id"] and len(data["train"]) == 19
    assert metrics["labels/usable"] == 8


def test_rows_have_trl_columns_texts_and_agreement(labelled):
    _, _, items, store = labelled
    data = export_preferences(store, items, "best_vs_worst", "majority", test_fraction=0.0)["train"]
    assert data.column_names == ["prompt", "chosen", "rejected", "prompt_id", "annotators", "agreement"]
    text = {cid: t for it in items for cid, t in zip(it.candidate_ids, it.candidates)}
    prompts = {it.item_id: it.prompt for it in items}
    got = {(r["prompt_id"], r["chosen"], r["rejected"]): (r["annotators"], r["agreement"]) for r in data}
    assert got == {
        ("p000", text["p000-c0"], text["p000-c2"]): (["A", "B", "C"], 1.0),
        ("p000", text["p000-c0"], text["p000-c1"]): (["A", "B"], pytest.approx(2 / 3)),
        ("p000", text["p000-c1"], text["p000-c2"]): (["A", "C"], pytest.approx(2 / 3)),
        ("p003", text["p003-c0"], text["p003-c2"]): (["B"], 1.0),  # flagged, ranked as usual
    }  # p001 c1>c0 is 1 of 2 (A tied): no majority
    assert all(r["prompt"] == prompts[r["prompt_id"]] for r in data)

    # keep_all: each annotator's own pairs, with the share of annotators agreeing with that direction.
    keep = export_preferences(store, items, "best_vs_worst", "keep_all", test_fraction=0.0)["train"]
    p004 = sorted((r["annotators"][0], r["chosen"], r["agreement"]) for r in keep if r["prompt_id"] == "p004")
    assert p004 == [("A", text["p004-c2"], 0.5), ("B", text["p004-c0"], 0.5)]


def test_split_is_by_prompt_and_artifact_round_trips(labelled, tmp_path):
    root, candidates, items, store = labelled
    data, metrics = build_export(store, items, "all_pairs", "keep_all", test_fraction=0.34, seed=0)
    art = write_preferences(tmp_path / "prefs", export.ExportConfig(), {"candidates": candidates}, data, metrics,
                            {"label_db": db_state(store)})
    assert open_artifact(art.path, "preferences").manifest["inputs"]["candidates"]["fingerprint"] == candidates.fingerprint
    data = load_from_disk(str(art.path / "data"))
    assert set(data) == {"train", "test"}
    assert len(data["test"]) > 0 and not set(data["train"]["prompt_id"]) & set(data["test"]["prompt_id"])
    m = art.metrics
    assert m["pairs/train"] + m["pairs/test"] == 22
    assert m["agreement/overlapping_items"] == 3 and m["labels/flagged"] == 1
    assert m["per_annotator"]["A"] == {"labels": 4, "skipped": 1, "flagged": 0, "overlapping": 3}


def test_cli_writes_artifact_and_reports_errors(labelled, tmp_path, capsys):
    root, *_ = labelled
    export.main(["--candidates", str(root / "candidates"), "--db", str(root / "labels.sqlite"),
                 "--out", str(tmp_path / "out"), "--pairing", "all_pairs", "--aggregation", "majority"])
    m = open_artifact(tmp_path / "out", "preferences").metrics
    assert m["pairs/total"] == 6 and m["pairs/test"] > 0  # two prompts: one of them held out
    assert f"{m['pairs/train']} train / {m['pairs/test']} test pairs" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        export.main(["--candidates", str(root / "candidates"), "--db", str(tmp_path / "missing.sqlite"),
                     "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "label DB not found" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()  # checking must not create an empty DB


def test_labels_for_unknown_items_or_candidates_are_refused(labelled, tmp_path):
    _, _, items, _ = labelled
    store = LabelStore(tmp_path / "other.sqlite")
    store.add_items([Item("zzz", "another prompt", ["z0", "z1"], ["x", "y"])])
    store.submit("A", "zzz", {"z0": 1, "z1": 2})
    with pytest.raises(ArtifactError, match="names item 'zzz', which is not in the candidates artifact"):
        export_preferences(store, items)

    # Same item id, but the DB's candidates came from another sample of the prompt.
    stale = LabelStore(tmp_path / "stale.sqlite")
    stale.add_items([Item("p000", "Review #0: This movie", ["old-0", "old-1"], ["x", "y"])])
    stale.submit("A", "p000", {"old-0": 1, "old-1": 2})
    with pytest.raises(ArtifactError, match=r"unknown candidate id\(s\) \['old-0', 'old-1'\]"):
        export_preferences(stale, items)


def test_empty_export_is_refused(labelled, tmp_path):
    _, _, items, _ = labelled
    store = LabelStore(tmp_path / "empty.sqlite")
    store.add_items(items)
    store.submit("A", "p000", {}, skipped=True)
    store.submit("A", "p001", _ranks("p001", (1, 1, 1)))  # all tied
    with pytest.raises(ArtifactError, match="nothing to export.*2 labels, 1 usable.*python -m annotation_ui"):
        export_preferences(store, items)


def test_not_a_label_db_or_truncated_db_is_refused(labelled, tmp_path):
    root, _, items, _ = labelled
    text = tmp_path / "notes.sqlite"
    text.write_text("just some text\n" * 100)
    with pytest.raises(ArtifactError, match="not a label DB \\(not an SQLite database\\)"):
        open_label_db(text)

    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(ArtifactError, match="SQLite database but not a label DB"):
        open_label_db(other)

    # A copy of the real DB cut in half (e.g. an interrupted copy).
    source = LabelStore(tmp_path / "full.sqlite", overlap=40)
    source.add_items(items * 1)
    for i in range(40):
        source.submit(f"ann{i}", "p000", _ranks("p000", (1, 2, 3)), rationale="x" * 500)
    source.close()
    data = (tmp_path / "full.sqlite").read_bytes()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt or truncated"):
        open_label_db(truncated)
    assert open_label_db(tmp_path / "full.sqlite").labels()  # the intact original opens fine


def test_bad_policy_names_are_refused(labelled):
    from rlhf.config import ConfigError

    _, _, items, store = labelled
    with pytest.raises(ConfigError, match="unknown pairing 'best'"):
        export_preferences(store, items, pairing="best")
    with pytest.raises(ConfigError, match="unknown aggregation 'vote'.*majority, keep_all"):
        export_preferences(store, items, aggregation="vote")
    with pytest.raises(ConfigError, match="test_fraction"):
        export_preferences(store, items, test_fraction=1.0)
