"""Many annotators at once through the app's HTTP API (gradio_client, loopback only), then a
restart: every acknowledged label is stored exactly once, and retries stay idempotent."""

from __future__ import annotations

import sqlite3
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from annotation_fixtures import Server, make_candidates_artifact  # noqa: E402

N_ANNOTATORS = 20
LABELS_EACH = 3
OVERLAP = 3
N_ITEMS = N_ANNOTATORS * LABELS_EACH // OVERLAP + 5  # a little slack: greedy assignment may strand a slot


def _annotate(url: str, name: str, password: str, barrier: threading.Barrier) -> list[dict]:
    from gradio_client import Client

    client = Client(url, auth=(name, password), verbose=False, download_files=False)
    barrier.wait(timeout=60)  # everyone starts submitting at the same moment
    acks = []
    for _ in range(LABELS_EACH):
        item = client.predict(api_name="/next_item")
        assert item is not None, f"{name} ran out of work"
        ranks = {cid: r + 1 for r, cid in enumerate(item["candidate_ids"])}
        request_id = uuid.uuid4().hex
        ack = client.predict(item["item_id"], ranks, False, False, "", request_id, api_name="/submit")
        # A client that lost the reply retries with the same request id: no second row.
        again = client.predict(item["item_id"], ranks, False, False, "", request_id, api_name="/submit")
        assert again["label_id"] == ack["label_id"]
        acks.append({**ack, "request_id": request_id})
    return acks


@pytest.mark.timeout(150)
def test_concurrent_annotators_every_ack_stored_once(tmp_path):
    make_candidates_artifact(tmp_path / "candidates", N_ITEMS, 2)
    db = tmp_path / "labels.sqlite"
    users = {f"ann{i:02d}": f"pw-{i}" for i in range(N_ANNOTATORS)}
    user_spec = ",".join(f"{u}:{p}" for u, p in users.items())

    with Server(db, tmp_path / "candidates", users=user_spec, admins=(), overlap=OVERLAP) as srv:
        barrier = threading.Barrier(N_ANNOTATORS)
        with ThreadPoolExecutor(max_workers=N_ANNOTATORS) as pool:
            futures = [pool.submit(_annotate, srv.url, u, p, barrier) for u, p in users.items()]
            acks = [ack for f in futures for ack in f.result(timeout=120)]

        # Without signing in nothing can be written.
        from gradio_client import Client
        from gradio_client.exceptions import AuthenticationError

        # The server answers, and refuses: a connection error or a failed call would not match.
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(srv.url, verbose=False).predict("p000", {"p000-c0": 1, "p000-c1": 2}, False, False, "",
                                                   "anon", api_name="/submit")

    assert len(acks) == N_ANNOTATORS * LABELS_EACH
    assert {a["annotator"] for a in acks} == set(users)  # the signed-in name, never a client-supplied one

    # Restart: a fresh process would see exactly this file.
    raw = sqlite3.connect(db)
    rows = raw.execute("SELECT label_id, annotator, item_id, request_id FROM labels").fetchall()
    raw.close()
    by_request = {}
    for label_id, annotator, item_id, request_id in rows:
        assert request_id not in by_request, f"duplicate row for request {request_id}"
        by_request[request_id] = (label_id, annotator, item_id)
    assert len(rows) == len(acks)
    for ack in acks:
        assert by_request[ack["request_id"]] == (ack["label_id"], ack["annotator"], ack["item_id"])

    # Assignment held under concurrency: N distinct annotators per item, nobody twice.
    per_item: dict[str, list[str]] = {}
    for _, annotator, item_id, _ in rows:
        per_item.setdefault(item_id, []).append(annotator)
    assert all(len(a) == len(set(a)) and len(a) <= OVERLAP for a in per_item.values()), per_item

    # The restarted app serves the same data; a late retry of an acknowledged request is still a no-op.
    with Server(db, tmp_path / "candidates", users=user_spec, admins=(), overlap=OVERLAP) as srv:
        from gradio_client import Client

        ack = acks[0]
        name = ack["annotator"]
        client = Client(srv.url, auth=(name, users[name]), verbose=False, download_files=False)
        again = client.predict(ack["item_id"], ack["ranks"], False, False, "", ack["request_id"], api_name="/submit")
        assert again["label_id"] == ack["label_id"]
        assert len(srv.store.labels(latest_only=False)) == len(acks)
        progress = srv.store.progress(name, OVERLAP)
        assert progress["mine"] == LABELS_EACH and progress["total_items"] == N_ITEMS
        assert progress["done_items"] == sum(len(a) == OVERLAP for a in per_item.values())
