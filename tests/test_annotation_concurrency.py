"""50 annotators at once through the app's HTTP API (gradio_client threads) against the app run as a
subprocess, which is killed with SIGKILL mid-run and restarted on the same DB. Afterwards every
acknowledged label is stored exactly once, no item has more than N annotators, and once the
annotators have finished no item is short of N (every annotator stays eligible for every item)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import free_port, make_candidates_artifact  # noqa: E402

N_ANNOTATORS = 50
OVERLAP = 3
N_ITEMS = 40  # 120 slots for 50 annotators: about 2-3 labels each
KILL_AFTER = 45  # acknowledged labels before the SIGKILL


class App:
    """``python -m annotation_ui`` as a child process (what an operator runs)."""

    def __init__(self, tmp: Path, users: dict[str, str]):
        self.tmp, self.port = tmp, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {**os.environ, "ANNOTATION_USERS": ",".join(f"{u}:{p}" for u, p in users.items())}
        self.proc: subprocess.Popen | None = None
        self.generation = 0  # bumped on every (re)start: clients reconnect when it changes

    def start(self) -> None:
        import httpx

        cmd = [sys.executable, "-m", "annotation_ui", "--candidates", str(self.tmp / "candidates"), "--db",
               str(self.tmp / "labels.sqlite"), "--port", str(self.port), "--overlap", str(OVERLAP),
               "--lease-seconds", "5"]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(self.url + "config", timeout=2).status_code in (200, 401):
                    self.generation += 1
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise TimeoutError("annotation app did not start")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _annotator(app: App, name: str, password: str, acks: list, lock: threading.Lock, done: threading.Event,
               restarted: threading.Event) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client, generation, pending = None, 0, None  # pending: a submit whose reply we have not seen yet
    deadline = time.time() + 100
    while time.time() < deadline and not done.is_set():
        try:
            if client is None or generation != app.generation:
                generation = app.generation
                client = Client(app.url, auth=(name, password), verbose=False, download_files=False,
                                httpx_kwargs={"timeout": 20})
            if pending is None:
                item = client.predict(api_name="/next_item")
                if item is None:  # nothing for me now: others may still give slots back
                    time.sleep(0.5)
                    continue
                pending = (item["item_id"], {c: r + 1 for r, c in enumerate(item["candidate_ids"])}, uuid.uuid4().hex)
            item_id, ranks, request_id = pending
            try:
                ack = client.predict(item_id, ranks, False, False, "", request_id, api_name="/submit")
            except AppError as exc:
                assert "refused" in str(exc), exc  # the slot went elsewhere while the server was down
                pending = None
                continue
            with lock:
                acks.append({**ack, "request_id": request_id})
            pending = None
        except AppError:
            raise
        except Exception:  # the server is gone (killed): wait for the restart, then resend the same request
            restarted.wait(60)
            time.sleep(0.2)
            client = None


@pytest.mark.timeout(170)
def test_sigkill_mid_run_loses_no_acknowledged_label_and_overfills_nothing(tmp_path):
    make_candidates_artifact(tmp_path / "candidates", N_ITEMS, 2)
    users = {f"ann{i:02d}": f"pw-{i}" for i in range(N_ANNOTATORS)}
    app = App(tmp_path, users)
    app.start()
    acks: list[dict] = []
    lock, done, restarted = threading.Lock(), threading.Event(), threading.Event()
    db = tmp_path / "labels.sqlite"

    def complete() -> bool:
        con = sqlite3.connect(db)
        try:
            short = con.execute("SELECT COUNT(*) FROM items WHERE taken < ?", (OVERLAP,)).fetchone()[0]
            leased = con.execute("SELECT COUNT(*) FROM leases WHERE counted = 1").fetchone()[0]
        finally:
            con.close()
        return short == 0 and leased == 0

    try:
        with ThreadPoolExecutor(max_workers=N_ANNOTATORS) as pool:
            futures = [pool.submit(_annotator, app, u, p, acks, lock, done, restarted) for u, p in users.items()]
            while len(acks) < KILL_AFTER:
                time.sleep(0.05)
                assert not any(f.done() for f in futures), [f.exception() for f in futures if f.done()]
            app.kill()
            killed_at = len(acks)
            app.start()
            restarted.set()
            deadline = time.time() + 90
            while not complete() and time.time() < deadline:
                time.sleep(0.5)
            done.set()
            for f in futures:
                f.result(timeout=60)
    finally:
        done.set()
        if app.proc and app.proc.poll() is None:
            app.proc.terminate()
            app.proc.wait(30)

    assert KILL_AFTER <= killed_at < len(acks)  # labels were acknowledged on both sides of the kill
    con = sqlite3.connect(db)
    rows = con.execute("SELECT label_id, annotator, item_id, request_id, skipped FROM labels").fetchall()
    con.close()
    by_request = {}
    for label_id, annotator, item_id, request_id, _ in rows:
        assert request_id not in by_request, f"duplicate row for request {request_id}"
        by_request[request_id] = (label_id, annotator, item_id)
    for ack in acks:  # every acknowledged label exactly once, as acknowledged
        assert by_request[ack["request_id"]] == (ack["label_id"], ack["annotator"], ack["item_id"])
    assert {a["annotator"] for a in acks} <= set(users)
    per_item: dict[str, list[str]] = {}
    for _, annotator, item_id, _, skipped in rows:
        per_item.setdefault(item_id, []).append(annotator)
    # Exactly N distinct annotators on every item: none over (the rule), none short (50 annotators,
    # every one of them eligible, worked until the queue was empty).
    assert len(per_item) == N_ITEMS
    assert all(len(a) == len(set(a)) == OVERLAP for a in per_item.values()), per_item
