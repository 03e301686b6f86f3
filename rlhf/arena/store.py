"""Append-only SQLite store of arena votes (what the annotation app's arena mode writes).

Durability as the label store: WAL journal, ``PRAGMA synchronous=FULL`` and one transaction per
vote, so a vote the server acknowledged survives a kill. Two tables:

* ``served``: one row per pair served (request id -> voter, item, left and right policy). It is the
  server-side ``PendingVote``; a vote names a request id and the item it was shown, and is refused
  unless both match a served row of the same voter, so a stale or retried submit can never land
  on another pair (nor on a pair served to someone else).
* ``votes``: one ``Vote`` per request id (UNIQUE) with a hash of its payload. Resubmitting the same
  vote is a no-op that returns the stored row; the same request id with another payload is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from rlhf.arena.format import OUTCOMES, PendingVote, Vote

SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT PRIMARY KEY, voter TEXT NOT NULL, item_id TEXT NOT NULL,
    left_policy TEXT NOT NULL, right_policy TEXT NOT NULL, served_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    vote_id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE, payload_hash TEXT NOT NULL,
    voter TEXT NOT NULL, item_id TEXT NOT NULL, left_policy TEXT NOT NULL, right_policy TEXT NOT NULL,
    outcome TEXT NOT NULL, timestamp REAL NOT NULL);
CREATE INDEX IF NOT EXISTS votes_voter ON votes (voter);
"""


class VoteRefused(ValueError):
    """A vote the store will not write (unknown or stale request, reused request id, bad outcome)."""


def payload_hash(voter: str, item_id: str, outcome: str) -> str:
    return hashlib.sha256(json.dumps([voter, item_id, outcome]).encode()).hexdigest()


class VoteStore:
    """Thread-safe (one connection, one lock): Gradio runs handlers on a thread pool."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_served(self, voter: str, pending: PendingVote) -> None:
        with self._lock:
            self._db.execute("INSERT INTO served VALUES (?, ?, ?, ?, ?, ?)",
                             (pending.request_id, voter, pending.item_id, pending.left, pending.right, pending.served_at))

    def record(self, voter: str, request_id: str, item_id: str, outcome: str,
               timestamp: float | None = None) -> tuple[int, Vote]:
        """Store the vote on the pair served as ``request_id``; returns (vote_id, vote). Idempotent per request id."""
        if outcome not in OUTCOMES:
            raise VoteRefused(f"outcome '{outcome}' is not one of: {', '.join(OUTCOMES)}")
        digest = payload_hash(voter, item_id, outcome)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                served = self._db.execute("SELECT voter, item_id, left_policy, right_policy, served_at FROM served "
                                          "WHERE request_id = ?", (request_id,)).fetchone()
                if served is None or served[0] != voter:
                    raise VoteRefused(f"request id '{request_id}' was not served to you: reload to get a new pair")
                if served[1] != item_id:
                    raise VoteRefused(f"stale vote: request '{request_id}' showed item {served[1]}, not {item_id}; "
                                      "reload to get a new pair")
                row = self._db.execute(f"SELECT {_VOTE_COLUMNS} FROM votes WHERE request_id = ?",
                                       (request_id,)).fetchone()
                if row is not None:
                    if row[1] != digest:
                        raise VoteRefused(f"request id '{request_id}' already holds another vote "
                                          f"({row[7]}); a new vote needs a new pair")
                    self._db.execute("COMMIT")
                    return row[0], _vote(row)
                pending = PendingVote(request_id, served[1], served[2], served[3], served[4])
                vote = pending.vote(voter, outcome, timestamp)
                cur = self._db.execute(
                    "INSERT INTO votes (request_id, payload_hash, voter, item_id, left_policy, right_policy, outcome, "
                    "timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (request_id, digest, voter, vote.item_id, vote.left, vote.right, outcome, vote.timestamp))
                self._db.execute("COMMIT")
                return int(cur.lastrowid), vote
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def votes(self) -> list[Vote]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_VOTE_COLUMNS} FROM votes ORDER BY vote_id").fetchall()
        return [_vote(r) for r in rows]

    def count(self, voter: str | None = None) -> int:
        with self._lock:
            if voter is None:
                return self._db.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM votes WHERE voter = ?", (voter,)).fetchone()[0]


_VOTE_COLUMNS = "vote_id, payload_hash, voter, item_id, left_policy, right_policy, timestamp, outcome, request_id"


def _vote(row) -> Vote:
    _, _, voter, item_id, left, right, timestamp, outcome, request_id = row
    return Vote(voter, item_id, left, right, outcome, timestamp, request_id)
