"""Arena mode of the annotation app (issue #15): the vote store's refusals, the HTTP API never naming a
policy, votes surviving a server kill, and pipelines.run ending with an arena round."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import free_port  # noqa: E402
from arena_fixtures import POLICIES, ArenaAppServer, make_arena_artifact, secrets_in  # noqa: E402

from rlhf.arena.format import Arena  # noqa: E402
from rlhf.arena.store import VoteRefused, VoteStore  # noqa: E402


@pytest.fixture
def arena_dir(tmp_path):
    return make_arena_artifact(tmp_path / "arena")


def test_store_binds_votes_to_the_served_pair(arena_dir, tmp_path):
    arena, store = Arena.load(arena_dir), VoteStore(tmp_path / "votes.sqlite")
    names = arena.policy_names
    shown, pending = arena.serve("item-00001", names[2], names[0])
    store.add_served("alice", pending)
    rid = shown["request_id"]
    with pytest.raises(VoteRefused, match="stale vote"):
        store.record("alice", rid, "item-00000", "A")  # a submit meant for another item
    with pytest.raises(VoteRefused, match="was not served to you"):
        store.record("bob", rid, "item-00001", "A")
    with pytest.raises(VoteRefused, match="was not served to you"):
        store.record("alice", "made-up", "item-00001", "A")
    with pytest.raises(VoteRefused, match="not one of"):
        store.record("alice", rid, "item-00001", "left")
    vote_id, vote = store.record("alice", rid, "item-00001", "B")
    assert (vote.left, vote.right, vote.outcome, vote.item_id) == (names[2], names[0], "B", "item-00001")
    assert store.record("alice", rid, "item-00001", "B")[0] == vote_id  # a retry is a no-op
    with pytest.raises(VoteRefused, match="already holds another vote"):
        store.record("alice", rid, "item-00001", "tie")
    assert store.votes() == [vote] and store.count("alice") == 1 and store.count("bob") == 0
    raw = sqlite3.connect(tmp_path / "votes.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_admin_leaderboard_and_export(arena_dir, tmp_path):
    from annotation_ui.arena_app import ArenaConfig, ArenaServer, leaderboard_view
    from annotation_ui.arena_export import main as export_main

    db = tmp_path / "votes.sqlite"
    server = ArenaServer(Arena.load(arena_dir), VoteStore(db), ArenaConfig(seed=0))
    assert leaderboard_view(server, tmp_path) == ("<p>No votes yet.</p>", None)
    for k in range(12):
        pair = server.next_pair(f"v{k % 2}")
        server.vote(f"v{k % 2}", pair["request_id"], pair["item_id"], "tie" if k % 3 else "A")
    table, png = leaderboard_view(server, tmp_path, rounds=50)
    assert all(f"<td>{name}</td>" in table for name in POLICIES) and "<td>policy-zebra-sft</td><td>1000</td>" in table
    assert Path(png).stat().st_size > 0
    server.store.close()
    export_main(["--arena", str(arena_dir), "--db", str(db), "--out", str(tmp_path / "export"),
                 "--bootstrap-rounds", "50"])
    from datasets import load_from_disk

    data = load_from_disk(str(tmp_path / "export" / "data"))
    assert len(data) == 12 and set(data["voter"]) == {"v0", "v1"} and set(data["winner"]) == {"A", "tie"}
    assert "| rank | policy | rating |" in (tmp_path / "export" / "report.md").read_text()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


@pytest.mark.timeout(120)
def test_api_serves_blind_pairs_and_refuses_bad_votes(arena_dir, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError, AuthenticationError

    with ArenaAppServer(arena_dir, tmp_path / "votes.sqlite", votes_per_voter=3) as srv:
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(srv.url, verbose=False).predict(api_name="/next_pair")
        client = Client(srv.url, auth=("bob", "pw-bob"), verbose=False, download_files=False)
        assert not secrets_in(json.dumps(client.view_api(print_info=False, return_format="dict")))
        first = client.predict(api_name="/next_pair")
        assert set(first) == {"item_id", "request_id", "prompt", "response_a", "response_b"}
        assert not secrets_in(json.dumps(first))
        arena = Arena.load(arena_dir)
        by_text = {arena.response(first["item_id"], p): p for p in POLICIES}
        left, right = by_text[first["response_a"]], by_text[first["response_b"]]
        assert left != right

        other = "item-00004" if first["item_id"] != "item-00004" else "item-00003"
        with pytest.raises(AppError, match="stale vote"):
            client.predict(other, first["request_id"], "A", api_name="/vote")
        ack = client.predict(first["item_id"], first["request_id"], "A", api_name="/vote")
        assert not secrets_in(json.dumps(ack)) and ack["outcome"] == "A" and ack["voter"] == "bob"
        assert client.predict(first["item_id"], first["request_id"], "A", api_name="/vote")["vote_id"] == ack["vote_id"]
        with pytest.raises(AppError, match="already holds another vote"):
            client.predict(first["item_id"], first["request_id"], "B", api_name="/vote")
        alice = Client(srv.url, auth=("alice", "pw-alice"), verbose=False, download_files=False)
        with pytest.raises(AppError, match="not served to you"):
            alice.predict(first["item_id"], first["request_id"], "tie", api_name="/vote")
        for _ in range(2):  # the cap: 3 votes, then no more pairs
            pair = client.predict(api_name="/next_pair")
            client.predict(pair["item_id"], pair["request_id"], "tie", api_name="/vote")
        assert client.predict(api_name="/next_pair") is None
        (stored,) = [v for v in srv.store.votes() if v.request_id == first["request_id"]]
        assert (stored.left, stored.right, stored.outcome) == (left, right, "A")
        assert len(srv.store.votes()) == 3


N_VOTERS, VOTES_EACH = 4, 5


def _start(arena_dir: Path, db: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "ANNOTATION_USERS": ",".join(f"v{i}:pw{i}" for i in range(N_VOTERS))}
    log = open(db.parent / f"server-{time.time():.0f}.log", "w")  # a file: a full pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "annotation_ui", "--arena", str(arena_dir), "--db", str(db),
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log.name
    return proc


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"app exited: {Path(proc.log_path).read_text()[-2000:]}")
        try:
            _get(url + "config")
            return
        except urllib.error.HTTPError:  # 401 before sign-in: the server is up
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("app did not start")


def _vote_until_killed(url: str, i: int, acks: list, stop: threading.Event) -> None:
    from gradio_client import Client

    client = Client(url, auth=(f"v{i}", f"pw{i}"), verbose=False, download_files=False)
    while not stop.is_set():
        try:
            pair = client.predict(api_name="/next_pair")
            acks.append(client.predict(pair["item_id"], pair["request_id"], "AB"[i % 2], api_name="/vote"))
        except Exception:
            return  # the server was killed mid-call: that vote was never acknowledged


@pytest.mark.timeout(150)
def test_votes_survive_a_server_kill(arena_dir, tmp_path):
    from gradio_client import Client

    db, port = tmp_path / "votes.sqlite", free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = _start(arena_dir, db, port)
    try:
        _wait_up(url, proc)
        acks: list[dict] = []
        stop = threading.Event()
        with ThreadPoolExecutor(N_VOTERS) as pool:
            futures = [pool.submit(_vote_until_killed, url, i, acks, stop) for i in range(N_VOTERS)]
            end = time.time() + 60
            while len(acks) < N_VOTERS * VOTES_EACH and time.time() < end:
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)  # mid-traffic: no shutdown hook runs
            proc.wait(timeout=10)
            stop.set()
            for f in futures:
                f.result(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acks) >= N_VOTERS * VOTES_EACH

    proc = _start(arena_dir, db, port)  # same DB, fresh process
    try:
        _wait_up(url, proc)
        stored = {v.request_id: v for v in VoteStore(db).votes()}
        rows = sqlite3.connect(db).execute("SELECT request_id FROM votes").fetchall()
        assert len(rows) == len(stored)  # no request twice
        for ack in acks:
            vote = stored[ack["request_id"]]
            assert (vote.voter, vote.item_id, vote.outcome) == (ack["voter"], ack["item_id"], ack["outcome"])
        # A retry of an acknowledged vote after the restart is still a no-op.
        ack = acks[0]
        i = int(ack["voter"][1:])
        client = Client(url, auth=(ack["voter"], f"pw{i}"), verbose=False, download_files=False)
        again = client.predict(ack["item_id"], ack["request_id"], ack["outcome"], api_name="/vote")
        assert again["vote_id"] == ack["vote_id"]
        assert len(VoteStore(db).votes()) == len(stored)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.mark.timeout(240)
def test_pipeline_run_ends_with_a_simulated_arena_round(sft_artifact, tmp_path, capsys):
    """pipelines.run with the arena stage listed: simulated voters, a leaderboard in the arena report."""
    from pipelines.run import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Two policies without training two: the SFT artifact under two names (equal strength, still rated).
    for name in ("sft", "sft_twin"):
        (run_dir / name).symlink_to(sft_artifact.path)
    main(["--config", "configs/tiny/pipeline.yaml", f"run_dir={run_dir}", "stages=[arena]",
          f"arena.policies=[{run_dir}/sft,{run_dir}/sft_twin]", "arena.data.num_examples=2000",
          "arena.data.max_test_examples=64", "arena.num_prompts=6", "arena.sampling.max_new_tokens=8",
          "arena.num_votes=40", "arena.num_voters=2", "arena.bootstrap_rounds=50"])
    out = capsys.readouterr().out
    assert f"arena report: {run_dir / 'arena' / 'report.md'}" in out
    report = (run_dir / "arena" / "report.md").read_text()
    assert "| rank | policy | rating |" in report and "| sft | 1000 |" in report and "sft_twin" in report
    assert "40 votes" in report


def test_annotate_round_serves_the_arena_and_rates_the_votes(arena_dir, tmp_path, monkeypatch):
    """pipelines.run --annotate with the arena stage: the app is served until the vote target, then exported."""
    import types

    from annotation_ui import launch

    run_dir = tmp_path / "run"
    store = VoteStore(run_dir / "arena_votes.sqlite")
    arena = Arena.load(arena_dir)
    for k in range(6):  # people's votes, as the app would store them
        shown, pending = arena.serve(f"item-0000{k % 5}", *arena.policy_names[k % 2: k % 2 + 2])
        store.add_served("alice", pending)
        store.record("alice", shown["request_id"], pending.item_id, "A")
    store.close()
    started = []

    class FakeApp:
        def __init__(self, cmd):
            self.cmd, self.code = cmd, None
            started.append(self)

        def poll(self):
            return self.code

        def terminate(self):
            self.code = 0

        def wait(self, timeout=None):
            return 0

    real_popen = subprocess.Popen  # launch.subprocess is the module itself: leave other callers alone
    monkeypatch.setattr(launch.subprocess, "Popen", lambda cmd, *a, **kw: FakeApp(cmd) if "annotation_ui" in cmd
                        else real_popen(cmd, *a, **kw))
    section = types.SimpleNamespace(output_dir=str(arena_dir), num_votes=6, bootstrap_rounds=50, seed=0)
    art = launch.vote_and_rate(types.SimpleNamespace(run_dir=str(run_dir), arena=section))
    (app,) = started
    assert app.cmd[app.cmd.index("--arena") + 1] == str(arena_dir) and app.code == 0  # stopped at the target
    assert art.path == run_dir / "arena_votes" and art.metrics["arena/votes"] == 6
    assert "| rank | policy | rating |" in (art.path / "report.md").read_text()
