"""The assignment rule (lease / revision / free slot), actions bound to the shown item, and the
refusals API callers see; plus the app's edge cases (K up to 26, CLI inputs checked before writing)."""

from __future__ import annotations

import random
import socket
import sqlite3
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import Server, make_candidates_artifact  # noqa: E402

from annotation_ui import app as ui  # noqa: E402
from annotation_ui.users import Users  # noqa: E402
from rlhf.preferences.store import CandidatesChanged, Item, LabelRefused, LabelStore  # noqa: E402


def _items(n: int, k: int = 2) -> list[Item]:
    return [Item(f"i{j}", f"prompt {j}", [f"i{j}c{c}" for c in range(k)], [f"text {c}" for c in range(k)])
            for j in range(n)]


def _ranks(item) -> dict[str, int]:
    return {c: r + 1 for r, c in enumerate(item["candidate_ids"] if isinstance(item, dict) else item.candidate_ids)}


def test_api_refusals_name_their_reason(tmp_path):
    from gradio_client import Client

    make_candidates_artifact(tmp_path / "candidates", 4, 2)
    users = "alice:pw-a,bob:pw-b,carol:pw-c"
    with Server(tmp_path / "labels.sqlite", tmp_path / "candidates", users=users, overlap=1) as srv:
        c = {n: Client(srv.url, auth=(n, f"pw-{n[0]}"), verbose=False, download_files=False)
             for n in ("alice", "bob", "carol")}

        def submit(name, item_id, request_id="", ranks=None):
            ranks = ranks or {f"{item_id}-c0": 1, f"{item_id}-c1": 2}
            return c[name].predict(item_id, ranks, False, False, "", request_id, api_name="/submit")

        held = c["alice"].predict(api_name="/next_item")["item_id"]
        with pytest.raises(Exception, match=r"refused \(not_leased\)"):  # the slot is alice's
            submit("bob", held)
        submit("alice", held)
        with pytest.raises(Exception, match=r"refused \(item_full\)"):
            submit("carol", held)
        bobs = c["bob"].predict(api_name="/next_item")["item_id"]
        free = next(i.item_id for i in srv.store.items() if i.item_id not in (held, bobs))
        with pytest.raises(Exception, match=r"refused \(stale_item\)"):  # bob holds another item
            submit("bob", free)

        srv.store.lease_seconds = 0.3  # carol's lease (only hers) runs out
        carols = c["carol"].predict(api_name="/next_item")["item_id"]
        time.sleep(0.5)
        srv.store.submit("dave", carols, {f"{carols}-c0": 2, f"{carols}-c1": 1})  # the free slot went to dave
        with pytest.raises(Exception, match=r"refused \(lease_expired\)"):
            submit("carol", carols)

        srv.store.lease_seconds = 120
        first = submit("bob", bobs, "req-1")
        assert submit("bob", bobs, "req-1")["label_id"] == first["label_id"]  # a retry: the same row
        with pytest.raises(Exception, match=r"refused \(request_reused\)"):
            submit("bob", bobs, "req-1", {f"{bobs}-c0": 2, f"{bobs}-c1": 1})

        rows = srv.store.labels(latest_only=False)
        assert sorted((r.annotator, r.item_id) for r in rows) == sorted(
            [("alice", held), ("dave", carols), ("bob", bobs)])  # nothing refused was written
        # Every connection the store opens (one per server thread) commits with synchronous=FULL.
        assert srv.store._con().execute("PRAGMA synchronous").fetchone()[0] == 2
        import threading

        seen = []
        t = threading.Thread(target=lambda: seen.append(srv.store._con().execute("PRAGMA synchronous").fetchone()[0]))
        t.start()
        t.join()
        assert seen == [2]


def test_open_slot_counter_matches_a_recount_under_random_actions(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", overlap=2, lease_seconds=60)
    store.add_items(_items(6))
    rng = random.Random(0)
    names = [f"a{i}" for i in range(5)]
    for _ in range(300):
        name, item = rng.choice(names), f"i{rng.randrange(6)}"
        action = rng.random()
        try:
            if action < 0.35:
                store.next_item(name)
            elif action < 0.6:
                store.submit(name, item, {f"{item}c0": 1, f"{item}c1": 2})
            elif action < 0.75:
                store.submit(name, item, {}, skipped=True)
            elif action < 0.9:
                store.release(name, item)
            else:
                store.renew(name, item)
        except LabelRefused:
            pass
    con = sqlite3.connect(tmp_path / "l.sqlite")
    for item_id, taken in con.execute("SELECT item_id, taken FROM items"):
        ranked = {lab.annotator for lab in store.labels() if lab.item_id == item_id and not lab.skipped}
        leased = con.execute("SELECT COUNT(*) FROM leases WHERE item_id = ? AND counted = 1", (item_id,)).fetchone()[0]
        assert taken == len(ranked) + leased <= 2, item_id
    # next_item walks the open-slot index, not the table.
    plan = " ".join(r[3] for r in con.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM items i INDEXED BY items_open WHERE i.taken < 2 "
        "ORDER BY i.taken DESC, i.seq LIMIT 1"))
    assert "items_open" in plan and "TEMP B-TREE" not in plan, plan


def test_gold_items_are_never_assigned_or_counted_incomplete(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", overlap=1)
    store.add_items(_items(2))
    store._con().execute("INSERT INTO gold_items(item_id, answer, source) VALUES ('i0', 'i0c0', 'test')")
    assert store.next_item("a").item_id == "i1" and store.next_item("b") is None
    assert [r["item_id"] for r in store.incomplete_items()] == ["i1"]
    assert [x["item_id"] for x in store.live_leases()] == ["i1"]
    assert store.release("a") == 1 and store.next_item("b").item_id == "i1"
    store.submit("b", "i1", {"i1c0": 1, "i1c1": 2})
    assert store.progress("b", 1) == {"mine": 1, "done_items": 1, "total_items": 1}  # --annotate stops here


def test_gold_items_take_every_annotators_answer_without_using_a_slot(tmp_path):
    store = LabelStore(tmp_path / "l.sqlite", overlap=1)
    store.add_items(_items(2))
    store._con().execute("INSERT INTO gold_items(item_id, answer, source) VALUES ('i0', 'i0c0', 'test')")
    for who in ("a", "b", "c"):  # quality-control answers from everyone, past the overlap of 1
        store.submit(who, "i0", {"i0c0": 1, "i0c1": 2})
    assert {lab.annotator for lab in store.labels() if lab.item_id == "i0"} == {"a", "b", "c"}
    assert store._con().execute("SELECT taken FROM items WHERE item_id = 'i0'").fetchone()[0] == 0
    store.submit("a", "i1", {"i1c0": 1, "i1c1": 2})
    with pytest.raises(LabelRefused) as refused:  # an ordinary item still stops at its overlap
        store.submit("b", "i1", {"i1c0": 1, "i1c1": 2})
    assert refused.value.reason == "item_full"


def _handlers(tmp_path, n=3, k=3, overlap=1, lease=120.0):
    make_candidates_artifact(tmp_path / "candidates", n, k)
    from annotation_ui.__main__ import import_candidates

    store = LabelStore(tmp_path / "l.sqlite", overlap=overlap, lease_seconds=lease)
    import_candidates(store, str(tmp_path / "candidates"))
    return store, ui.AppConfig(overlap=overlap, users=Users({"alice": "pw", "bob": "pw"}))


def page(view):  # what the page's hidden fields hold
    return (view.state.item_id or "", view.state.request_id)


def test_lost_reply_and_stale_page_never_label_the_next_item(tmp_path):
    store, cfg = _handlers(tmp_path)
    req = SimpleNamespace(username="alice")
    v1 = ui.on_load(store, cfg, ui.TaskState(), req)
    v2 = ui.submit_ranking(store, cfg, v1.state, page(v1), ["1", "2", "3"], False, "", req)
    assert v2.state.item_id == "p001"
    # The reply was lost, the page still shows p000 and the annotator presses Submit again.
    again = ui.submit_ranking(store, cfg, v2.state, page(v1), ["1", "2", "3"], False, "", req)
    assert "Already saved" in again.status and again.state.item_id == "p001"
    assert len(store.labels(latest_only=False)) == 1 and store.label_for("alice", "p001") is None
    with pytest.raises(Exception, match="already used"):  # the same request with other ranks
        ui.submit_ranking(store, cfg, v2.state, page(v1), ["3", "2", "1"], False, "", req)
    with pytest.raises(Exception, match="(?i)this page shows item p000"):  # a stale page with a fresh request id
        ui.skip(store, cfg, v2.state, ("p000", "fresh"), False, "", req)
    with pytest.raises(Exception, match="(?i)this page shows item p000"):
        ui.go_back(store, cfg, v2.state, ("p000", "fresh"), req)
    assert len(store.labels(latest_only=False)) == 1


def test_skip_then_back_cannot_take_a_slot_handed_on(tmp_path):
    store, cfg = _handlers(tmp_path, n=1)
    alice, bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
    v = ui.on_load(store, cfg, ui.TaskState(), alice)
    v = ui.skip(store, cfg, v.state, page(v), False, "", alice)
    assert v.state.item_id is None
    vb = ui.on_load(store, cfg, ui.TaskState(), bob)  # the freed slot goes to bob
    assert vb.state.item_id == "p000"
    v = ui.go_back(store, cfg, v.state, page(v), alice)
    assert v.state.item_id == "p000" and v.state.revising
    v = ui.submit_ranking(store, cfg, v.state, page(v), ["1", "2", "3"], False, "", alice)
    assert "Not saved" in v.status and "not leased to you" in v.status
    assert store.label_for("alice", "p000").skipped
    ui.submit_ranking(store, cfg, vb.state, page(vb), ["1", "2", "3"], False, "", bob)
    assert [lab.annotator for lab in store.labels() if not lab.skipped] == ["bob"]


def test_heartbeat_renews_the_lease_and_rechecks_an_empty_queue(tmp_path):
    store, cfg = _handlers(tmp_path, n=1, lease=0.5)
    alice, bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
    va = ui.on_load(store, cfg, ui.TaskState(), alice)
    vb = ui.on_load(store, cfg, ui.TaskState(), bob)
    assert va.state.item_id == "p000" and vb.state.item_id is None
    for _ in range(3):  # longer than the lease, but the page keeps beating
        time.sleep(0.3)
        assert ui.heartbeat(store, cfg, va.state, alice) is None
        assert ui.heartbeat(store, cfg, vb.state, bob) is None  # still nothing for bob
    assert [x["annotator"] for x in store.live_leases()] == ["alice"]
    store.release("alice", "p000")  # alice closed the tab (the app's unload handler does this)
    vb = ui.heartbeat(store, cfg, vb.state, bob)
    assert vb.state.item_id == "p000" and "New items" in vb.status
    # alice's page comes back: her item is bob's now, so her page moves on.
    va = ui.heartbeat(store, cfg, va.state, alice)
    assert va.state.item_id is None and "handed to another annotator" in va.status
    page = ui.assignment_html(store, 1)
    assert "Incomplete items: 1" in page and "Live leases: 1" in page and "<td>bob</td>" in page


def test_up_to_26_candidates(tmp_path):
    store, cfg = _handlers(tmp_path, n=2, k=12)
    req = SimpleNamespace(username="alice")
    ui.build_app(store, cfg)  # lays out 12 columns
    v = ui.on_load(store, cfg, ui.TaskState(), req)
    assert len(v.candidates) == 12 and "Response L" in v.candidates[11]
    v = ui.submit_ranking(store, cfg, v.state, page(v), [str(r) for r in range(1, 13)], False, "", req)
    assert sorted(store.labels()[0].ranks.values()) == list(range(1, 13))
    store.add_items([Item("big", "p", [f"c{i}" for i in range(27)], [f"t{i}" for i in range(27)])])
    with pytest.raises(ValueError, match="at most 26"):
        ui.build_app(store, cfg)


def test_missing_guidelines_is_not_reported_as_unconfigured():
    assert "missing" in ui._guidelines_text(ui.AppConfig(guidelines="/nowhere/guide.md"))
    assert "No guidelines file configured" in ui._guidelines_text(ui.AppConfig(guidelines=None))


def _cli(args, capsys):
    from annotation_ui.__main__ import main

    capsys.readouterr()  # drop the fixture's progress bars
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_cli_checks_inputs_before_writing(tmp_path, capsys):
    make_candidates_artifact(tmp_path / "candidates", 3, 2)
    db = tmp_path / "labels.sqlite"
    base = ["--candidates", str(tmp_path / "candidates"), "--db", str(db), "--no-auth"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        err = _cli([*base, "--port", str(busy.getsockname()[1])], capsys)
        assert "--port" in err
    assert "does not exist" in _cli([*base, "--guidelines", str(tmp_path / "guide.md")], capsys)
    assert "no label DB" in _cli(["--db", str(db), "--no-auth"], capsys)
    make_candidates_artifact(tmp_path / "wide", 1, 27)
    assert "at most 26" in _cli(["--candidates", str(tmp_path / "wide"), "--db", str(db), "--no-auth"], capsys)
    assert not db.exists()  # nothing was written by any refused start
    with pytest.raises(FileNotFoundError, match="check the --db path"):  # e.g. the admin report on a typo
        LabelStore(tmp_path / "typo.sqlite", create=False)
    assert not (tmp_path / "typo.sqlite").exists()


def test_regenerated_candidates_are_refused(tmp_path, capsys):
    make_candidates_artifact(tmp_path / "candidates", 3, 2)
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    from annotation_ui.__main__ import import_candidates

    assert import_candidates(store, str(tmp_path / "candidates")) == 3
    assert import_candidates(store, str(tmp_path / "candidates")) == 0  # the same candidates: nothing new
    changed = [Item("p001", "Review #1: This movie", ["p001-c0", "p001-c1"], ["new text", "other"]),
               Item("p999", "new prompt", ["x", "y"], ["a", "b"])]
    with pytest.raises(CandidatesChanged, match="p001 is already in labels.sqlite with other candidates"):
        store.add_items(changed)
    assert [i.item_id for i in store.items()] == ["p000", "p001", "p002"]  # nothing imported
    assert store.item("p001").candidates[0].startswith("Candidate 0")
