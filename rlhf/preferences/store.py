"""Label storage (the annotation app's and the simulated annotators'): SQLite (WAL), append-only label rows.

Nothing an annotator submits is ever updated or deleted. A revision is a *new* row whose
``supersedes`` points at the row it replaces; "the" label of an (annotator, item) pair is the
latest row that nothing supersedes. Every ``submit`` is one ``BEGIN IMMEDIATE`` transaction,
committed with ``synchronous=FULL`` before it returns, so a label the UI has confirmed survives a
crash or restart. A client-chosen ``request_id`` makes retries idempotent (a double click or a
resent HTTP request returns the first row instead of adding a second one).

Several processes and threads may share one database file: each thread gets its own connection,
writers serialise on SQLite's lock (``busy_timeout`` waits instead of failing).

Assignment (``next_item``): an item goes to ``overlap`` distinct annotators and never twice to the
same one. Handing an item out takes a short lease so that concurrent annotators are not all sent
to the same nearly-finished item; an expired lease frees the slot again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from contextlib import contextmanager

SCHEMA_VERSION = 2

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,        -- import order = assignment order
    item_id TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    candidate_ids TEXT NOT NULL,                  -- JSON list
    candidates TEXT NOT NULL,                     -- JSON list, same order as candidate_ids
    created_at REAL NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0              -- slots in use: live leases + annotators with a ranking
);
CREATE TABLE IF NOT EXISTS labels (
    label_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES items(item_id),
    annotator TEXT NOT NULL,
    ranks TEXT NOT NULL,                          -- JSON {candidate_id: rank}, 1 = best, ties share a rank
    skipped INTEGER NOT NULL DEFAULT 0,
    flagged INTEGER NOT NULL DEFAULT 0,
    rationale TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    supersedes INTEGER REFERENCES labels(label_id),
    request_id TEXT UNIQUE,
    meta TEXT NOT NULL DEFAULT '{}',              -- JSON: vote type, display order, ...
    payload_hash TEXT                             -- what request_id was used for (a reuse must match)
);
CREATE TABLE IF NOT EXISTS drafts (
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL,
    draft TEXT NOT NULL,                          -- JSON
    updated_at REAL NOT NULL,
    PRIMARY KEY (annotator, item_id)
);
CREATE TABLE IF NOT EXISTS leases (
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    counted INTEGER NOT NULL DEFAULT 1,           -- 0 once expired: kept so a late submit is told why
    PRIMARY KEY (annotator, item_id)
);
-- Items with a known answer for annotator quality control (served by their own path, never through
-- next_item, and left out of overlap accounting). Same definition as the quality-control module's.
CREATE TABLE IF NOT EXISTS gold_items (item_id TEXT PRIMARY KEY, answer TEXT NOT NULL, source TEXT);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS labels_by_pair ON labels(annotator, item_id, label_id);
CREATE INDEX IF NOT EXISTS labels_by_item ON labels(item_id);
CREATE INDEX IF NOT EXISTS labels_supersedes ON labels(supersedes);
CREATE INDEX IF NOT EXISTS items_open ON items(taken DESC, seq);  -- next_item: open slots, fullest first
CREATE INDEX IF NOT EXISTS leases_by_item ON leases(item_id);
CREATE INDEX IF NOT EXISTS leases_live ON leases(counted, expires_at);
"""

# Columns added after schema version 1 (a v1 DB is upgraded in place; nothing is dropped).
_ADDED_COLUMNS = {
    "items": [("taken", "INTEGER NOT NULL DEFAULT 0")],
    "labels": [("payload_hash", "TEXT")],
    "leases": [("counted", "INTEGER NOT NULL DEFAULT 1")],
}

# Latest row per (annotator, item): the one no other row supersedes.
_LATEST = "NOT EXISTS (SELECT 1 FROM labels s WHERE s.supersedes = l.label_id)"


@dataclass
class Item:
    """One annotation task: a prompt and its K candidate responses."""

    item_id: str
    prompt: str
    candidate_ids: list[str]
    candidates: list[str]


@dataclass
class Label:
    """One submitted label row (append-only; a revision is a new row superseding the old)."""

    label_id: int
    item_id: str
    annotator: str
    ranks: dict[str, int]  # candidate_id -> rank, 1 = best, ties share a rank
    skipped: bool
    flagged: bool
    rationale: str
    created_at: float
    supersedes: int | None
    request_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"vote": "tie", "display_order": [...]}


def items_from_candidates(dataset: Any) -> list[Item]:
    """Map a "candidates" artifact dataset (prompt_id, prompt, candidate_ids, candidates) to Items."""
    missing = {"prompt_id", "prompt", "candidate_ids", "candidates"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"candidates dataset lacks column(s) {sorted(missing)}; expected prompt_id, prompt, "
            f"candidate_ids, candidates (the output of python -m pipelines.generate)"
        )
    items = []
    for row in dataset:
        ids, texts = [str(c) for c in row["candidate_ids"]], [str(t) for t in row["candidates"]]
        if len(ids) != len(texts):
            raise ValueError(f"prompt {row['prompt_id']}: {len(ids)} candidate ids but {len(texts)} candidates")
        items.append(Item(str(row["prompt_id"]), str(row["prompt"]), ids, texts))
    return items


def validate_ranks(item: Item, ranks: dict[str, int], skipped: bool = False) -> dict[str, int]:
    """Check a ranking against an item; return it with int ranks. Raises ValueError with the reason."""
    if not isinstance(ranks, dict):
        raise ValueError(f"ranks must be a dict candidate_id -> rank, got {type(ranks).__name__}")
    unknown = sorted(set(map(str, ranks)) - set(item.candidate_ids))
    if unknown:
        raise ValueError(f"item {item.item_id}: unknown candidate id(s) {unknown}; valid: {item.candidate_ids}")
    clean: dict[str, int] = {}
    for cid, rank in ranks.items():
        if isinstance(rank, bool) or not isinstance(rank, (int, float, str)):
            raise ValueError(f"item {item.item_id}: rank of {cid} must be an integer, got {rank!r}")
        try:
            value = int(rank)
        except (TypeError, ValueError):
            raise ValueError(f"item {item.item_id}: rank of {cid} must be an integer, got {rank!r}") from None
        if value != float(rank) or value < 1 or value > len(item.candidate_ids):
            raise ValueError(
                f"item {item.item_id}: rank of {cid} is {rank!r}; ranks are integers 1..{len(item.candidate_ids)} "
                f"(1 = best, tied candidates share a rank)"
            )
        clean[str(cid)] = value
    if not skipped:
        missing = [c for c in item.candidate_ids if c not in clean]
        if missing:
            raise ValueError(
                f"item {item.item_id}: rank every candidate (missing {missing}), or submit it as skipped"
            )
    return clean


class LabelRefused(ValueError):
    """A submit the assignment rule does not allow; ``reason`` is one of ``REFUSALS``."""

    def __init__(self, reason: str, message: str):
        assert reason in REFUSALS, reason
        super().__init__(message)
        self.reason = reason


REFUSALS = ("not_leased", "item_full", "lease_expired", "stale_item", "request_reused")


class CandidatesChanged(ValueError):
    """An item id already in the store arrives with other candidates (regenerated texts)."""


def payload_hash(annotator: str, item_id: str, ranks: dict[str, int], skipped: bool, flagged: bool,
                 rationale: str) -> str:
    """What a request_id was used for: a retry must send the same payload."""
    body = json.dumps([annotator, item_id, ranks, bool(skipped), bool(flagged), rationale], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


class LabelStore:
    """Items, append-only labels, drafts and assignment leases in one SQLite file.

    ``overlap`` (distinct annotators per item) and ``lease_seconds`` are this server's defaults;
    ``next_item`` and ``submit`` take an explicit ``overlap`` too.
    """

    def __init__(self, db_path: str | Path, lease_seconds: float = 120.0, timeout: float = 30.0,
                 overlap: int = 1, create: bool = True):
        self.db_path = Path(db_path)
        if not create and not self.db_path.is_file():
            raise FileNotFoundError(f"no label DB at {self.db_path}: check the --db path")
        if overlap < 1 or lease_seconds < 0:
            raise ValueError(f"overlap must be >= 1 and lease_seconds >= 0, got {overlap} and {lease_seconds}")
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_seconds = lease_seconds
        self.overlap = overlap
        self.timeout = timeout
        self._local = threading.local()
        self._con().executescript(_TABLES)
        with self._write() as con:
            self._upgrade(con)
            for stmt in filter(str.strip, _INDEXES.split(";")):
                con.execute(stmt)

    @staticmethod
    def _upgrade(con: sqlite3.Connection) -> None:
        """Bring a schema-v1 DB up to date in place: add columns, count the slots in use."""
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        for table, columns in _ADDED_COLUMNS.items():
            have = {r["name"] for r in con.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        if version is not None and int(version["value"]) < 2:
            con.execute(
                f"""UPDATE items SET taken =
                    (SELECT COUNT(*) FROM leases x WHERE x.item_id = items.item_id AND x.counted = 1)
                  + (SELECT COUNT(DISTINCT annotator) FROM labels l WHERE l.item_id = items.item_id
                       AND l.skipped = 0 AND {_LATEST})""")
        con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # -- connections ---------------------------------------------------------------------------

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.db_path, timeout=self.timeout, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = FULL")  # a committed label survives power loss, not just a crash
            con.execute("PRAGMA foreign_keys = ON")
            self._local.con = con
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken up front so read-then-write cannot race."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- items ---------------------------------------------------------------------------------

    def add_items(self, items: Iterable[Item]) -> int:
        """Import items; an item_id already present with the same candidates is left untouched.

        Returns how many were new. An existing item_id whose candidate ids or texts differ (the
        candidates were regenerated) raises ``CandidatesChanged`` and nothing is imported: labels
        rank the old texts, so the new ones need a new DB.
        """
        items = list(items)
        for it in items:
            if len(it.candidate_ids) != len(it.candidates) or len(it.candidate_ids) < 2:
                raise ValueError(f"item {it.item_id}: needs >= 2 candidates with one id each")
            if len(set(it.candidate_ids)) != len(it.candidate_ids):
                raise ValueError(f"item {it.item_id}: duplicate candidate ids {it.candidate_ids}")
        new = 0
        now = time.time()
        with self._write() as con:
            for it in items:
                old = con.execute("SELECT candidate_ids, candidates, prompt FROM items WHERE item_id = ?",
                                  (str(it.item_id),)).fetchone()
                if old is not None:
                    if (json.loads(old["candidate_ids"]), json.loads(old["candidates"]), old["prompt"]) != (
                            list(it.candidate_ids), list(it.candidates), it.prompt):
                        raise CandidatesChanged(
                            f"item {it.item_id} is already in {self.db_path.name} with other candidates (were they "
                            f"regenerated?); its labels rank the old texts. Label the new candidates in a new --db.")
                    continue
                con.execute(
                    "INSERT INTO items(item_id, prompt, candidate_ids, candidates, created_at) VALUES (?, ?, ?, ?, ?)",
                    (str(it.item_id), it.prompt, json.dumps(list(it.candidate_ids)), json.dumps(list(it.candidates)), now),
                )
                new += 1
        return new

    @staticmethod
    def _item(row: sqlite3.Row) -> Item:
        return Item(row["item_id"], row["prompt"], json.loads(row["candidate_ids"]), json.loads(row["candidates"]))

    def items(self) -> list[Item]:
        return [self._item(r) for r in self._con().execute("SELECT * FROM items ORDER BY seq")]

    def item(self, item_id: str) -> Item:
        row = self._con().execute("SELECT * FROM items WHERE item_id = ?", (str(item_id),)).fetchone()
        if row is None:
            raise KeyError(f"no item {item_id!r} in the label DB")  # no server path: users see this
        return self._item(row)

    # -- labels --------------------------------------------------------------------------------

    @staticmethod
    def _label(row: sqlite3.Row) -> Label:
        return Label(
            label_id=row["label_id"], item_id=row["item_id"], annotator=row["annotator"],
            ranks=json.loads(row["ranks"]), skipped=bool(row["skipped"]), flagged=bool(row["flagged"]),
            rationale=row["rationale"], created_at=row["created_at"], supersedes=row["supersedes"],
            request_id=row["request_id"], meta=json.loads(row["meta"] or "{}"),
        )

    def submit(
        self, annotator: str, item_id: str, ranks: dict[str, int], *, skipped: bool = False,
        flagged: bool = False, rationale: str = "", request_id: str | None = None,
        meta: dict[str, Any] | None = None, overlap: int | None = None,
    ) -> Label:
        """Append a label (superseding this annotator's previous one for the item); committed on return.

        One rule, checked in the same transaction that writes: a label is accepted from an annotator
        who holds a live lease on the item, or revises their own ranking of it, or while the item has
        a free slot (fewer than ``overlap`` annotators ranking or holding it). Otherwise
        ``LabelRefused`` says why. A skip frees the annotator's slot; turning a skip back into a
        ranking needs a slot again. A ``request_id`` seen before returns the stored row when the
        payload is the same and is refused when it differs.
        """
        annotator = (annotator or "").strip()
        if not annotator:
            raise ValueError("annotator name is empty: sign in before submitting")
        overlap = self.overlap if overlap is None else overlap
        item = self.item(item_id)  # KeyError for an unknown item
        clean = validate_ranks(item, ranks or {}, skipped=skipped)
        rationale = rationale or ""
        digest = payload_hash(annotator, item.item_id, clean, skipped, flagged, rationale)
        now = time.time()
        with self._write() as con:
            if request_id is not None:
                row = con.execute("SELECT * FROM labels WHERE request_id = ?", (request_id,)).fetchone()
                if row is not None:
                    same = (row["payload_hash"] == digest if row["payload_hash"] is not None
                            else (row["annotator"], row["item_id"]) == (annotator, item.item_id))
                    if not same:
                        raise LabelRefused("request_reused", f"request_id {request_id!r} was already used for "
                                           "another label (a different payload); send a new request id")
                    return self._label(row)
            self._expire(con, now)
            lease = con.execute("SELECT counted FROM leases WHERE annotator = ? AND item_id = ?",
                                (annotator, item.item_id)).fetchone()
            live = lease is not None and lease["counted"] == 1
            prev = con.execute(
                f"SELECT label_id, skipped FROM labels l WHERE annotator = ? AND item_id = ? AND {_LATEST} "
                "ORDER BY label_id DESC LIMIT 1", (annotator, item.item_id),
            ).fetchone()
            # Gold (quality-control) items are shown to every annotator and hold no overlap slot.
            gold = con.execute("SELECT 1 FROM gold_items WHERE item_id = ?", (item.item_id,)).fetchone() is not None
            had_slot = live or (prev is not None and not prev["skipped"])
            if not gold and (not had_slot and not skipped or (prev is None and not live)):
                self._check_free_slot(con, annotator, item.item_id, overlap, expired=lease is not None,
                                      revising=prev is not None)
            delta = 0 if gold else int(not skipped) - int(had_slot)
            if delta:
                con.execute("UPDATE items SET taken = taken + ? WHERE item_id = ?", (delta, item.item_id))
            cur = con.execute(
                "INSERT INTO labels(item_id, annotator, ranks, skipped, flagged, rationale, created_at, "
                "supersedes, request_id, meta, payload_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.item_id, annotator, json.dumps(clean, sort_keys=True), int(bool(skipped)),
                 int(bool(flagged)), rationale, now, prev["label_id"] if prev else None,
                 request_id, json.dumps(meta or {}), digest),
            )
            con.execute("DELETE FROM drafts WHERE annotator = ? AND item_id = ?", (annotator, item.item_id))
            con.execute("DELETE FROM leases WHERE annotator = ? AND item_id = ?", (annotator, item.item_id))
            row = con.execute("SELECT * FROM labels WHERE label_id = ?", (cur.lastrowid,)).fetchone()
        return self._label(row)

    def _check_free_slot(self, con: sqlite3.Connection, annotator: str, item_id: str, overlap: int,
                         expired: bool, revising: bool) -> None:
        """Raise ``LabelRefused`` unless ``item_id`` has a free slot this annotator may take."""
        if not revising:
            other = con.execute(
                "SELECT item_id FROM leases WHERE annotator = ? AND counted = 1 AND item_id != ? LIMIT 1",
                (annotator, item_id)).fetchone()
            if other is not None:
                raise LabelRefused("stale_item", f"item {item_id} is not the item you hold ({other['item_id']}): "
                                   "reload to see your current task")
        taken = con.execute("SELECT taken FROM items WHERE item_id = ?", (item_id,)).fetchone()["taken"]
        if taken < overlap:
            return
        if expired:
            raise LabelRefused("lease_expired", f"your lease on item {item_id} expired and its slot went to another "
                               "annotator; nothing was saved - take the next item")
        ranked = con.execute(
            f"SELECT COUNT(DISTINCT annotator) FROM labels l WHERE item_id = ? AND skipped = 0 AND {_LATEST}",
            (item_id,)).fetchone()[0]
        if ranked >= overlap:
            raise LabelRefused("item_full", f"item {item_id} already has its {overlap} label(s); nothing was saved")
        raise LabelRefused("not_leased", f"item {item_id} is not leased to you and its {overlap} slot(s) are held "
                           "by other annotators; ask for the next item instead")

    def labels(self, latest_only: bool = True) -> list[Label]:
        """Label rows in submission order; by default only the latest row per (annotator, item)."""
        where = f"WHERE {_LATEST}" if latest_only else ""
        rows = self._con().execute(f"SELECT * FROM labels l {where} ORDER BY label_id")
        return [self._label(r) for r in rows]

    def history(self, annotator: str) -> list[Label]:
        """This annotator's current labels in the order the items were first labelled (what "back"
        walks through; revising an item does not move it to the end)."""
        rows = self._con().execute(
            f"""SELECT l.* FROM labels l WHERE annotator = ? AND {_LATEST}
                ORDER BY (SELECT MIN(f.label_id) FROM labels f WHERE f.annotator = l.annotator
                          AND f.item_id = l.item_id)""", (annotator,)
        )
        return [self._label(r) for r in rows]

    def label_for(self, annotator: str, item_id: str) -> Label | None:
        row = self._con().execute(
            f"SELECT * FROM labels l WHERE annotator = ? AND item_id = ? AND {_LATEST} "
            "ORDER BY label_id DESC LIMIT 1", (annotator, str(item_id)),
        ).fetchone()
        return self._label(row) if row else None

    def label_by_request(self, request_id: str) -> Label | None:
        """The row a request id was used for, if any (a resent request is answered with it)."""
        row = self._con().execute("SELECT * FROM labels WHERE request_id = ?", (request_id,)).fetchone()
        return self._label(row) if row else None

    def flagged(self) -> list[Label]:
        """Current labels that flag their item as bad/unsafe."""
        return [lab for lab in self.labels() if lab.flagged]

    # -- assignment ----------------------------------------------------------------------------

    def _expire(self, con: sqlite3.Connection, now: float) -> None:
        """Free the slots of leases that ran out (kept as uncounted rows so a late submit learns why)."""
        for row in con.execute("SELECT item_id, COUNT(*) AS n FROM leases WHERE counted = 1 AND expires_at < ? "
                               "GROUP BY item_id", (now,)).fetchall():
            con.execute("UPDATE items SET taken = taken - ? WHERE item_id = ?", (row["n"], row["item_id"]))
        con.execute("UPDATE leases SET counted = 0 WHERE counted = 1 AND expires_at < ?", (now,))

    def next_item(self, annotator: str, overlap: int | None = None) -> Item | None:
        """The next item for this annotator (leased to them), or None when nothing is left for them.

        Eligible: never labelled (or skipped) by this annotator, not a gold item, and fewer than
        ``overlap`` annotators rank it or hold a live lease on it. The fullest open item goes first
        (then import order), found through the ``items_open`` index, so the cost does not grow with
        the number of items. An item already leased to this annotator comes back first (a reload
        shows the same task) and its lease is renewed.
        """
        overlap = self.overlap if overlap is None else overlap
        if overlap < 1:
            raise ValueError(f"overlap must be >= 1, got {overlap}")
        now = time.time()
        with self._write() as con:
            self._expire(con, now)
            row = con.execute(
                """SELECT i.* FROM leases x JOIN items i ON i.item_id = x.item_id
                   WHERE x.annotator = ? AND x.counted = 1 ORDER BY i.seq LIMIT 1""", (annotator,),
            ).fetchone()
            if row is None:
                row = con.execute(
                    """SELECT i.* FROM items i INDEXED BY items_open
                       WHERE i.taken < :n
                         AND NOT EXISTS (SELECT 1 FROM labels m WHERE m.annotator = :a AND m.item_id = i.item_id)
                         AND NOT EXISTS (SELECT 1 FROM gold_items g WHERE g.item_id = i.item_id)
                       ORDER BY i.taken DESC, i.seq LIMIT 1""",
                    {"a": annotator, "n": overlap},
                ).fetchone()
                if row is None:
                    return None
                con.execute("UPDATE items SET taken = taken + 1 WHERE item_id = ?", (row["item_id"],))
            con.execute(
                "INSERT OR REPLACE INTO leases(annotator, item_id, expires_at, counted) VALUES (?, ?, ?, 1)",
                (annotator, row["item_id"], now + self.lease_seconds),
            )
        return self._item(row)

    def renew(self, annotator: str, item_id: str, overlap: int | None = None) -> bool:
        """Heartbeat: extend this annotator's lease on ``item_id``; retake it if it lapsed and the slot
        is still free. False when the item is no longer theirs to label (a submit would be refused)."""
        overlap = self.overlap if overlap is None else overlap
        now = time.time()
        with self._write() as con:
            self._expire(con, now)
            lease = con.execute("SELECT counted FROM leases WHERE annotator = ? AND item_id = ?",
                                (annotator, str(item_id))).fetchone()
            if lease is None or not lease["counted"]:
                mine = con.execute("SELECT 1 FROM labels WHERE annotator = ? AND item_id = ? LIMIT 1",
                                   (annotator, str(item_id))).fetchone()
                taken = con.execute("SELECT taken FROM items WHERE item_id = ?", (str(item_id),)).fetchone()
                if mine is not None or taken is None or taken["taken"] >= overlap:
                    return False
                con.execute("UPDATE items SET taken = taken + 1 WHERE item_id = ?", (str(item_id),))
            con.execute("INSERT OR REPLACE INTO leases(annotator, item_id, expires_at, counted) VALUES (?, ?, ?, 1)",
                        (annotator, str(item_id), now + self.lease_seconds))
        return True

    def release(self, annotator: str, item_id: str | None = None) -> int:
        """Give leased items back (page closed, signed out): one item, or all of this annotator's.
        Returns how many slots were freed."""
        with self._write() as con:
            where, args = "annotator = ? AND counted = 1", [annotator]
            if item_id is not None:
                where, args = where + " AND item_id = ?", [annotator, str(item_id)]
            rows = con.execute(f"SELECT item_id FROM leases WHERE {where}", args).fetchall()
            for row in rows:
                con.execute("UPDATE items SET taken = taken - 1 WHERE item_id = ?", (row["item_id"],))
            con.execute(f"DELETE FROM leases WHERE {where}", args)
        return len(rows)

    def live_leases(self) -> list[dict[str, Any]]:
        """Unexpired leases: annotator, item_id, seconds_left (for the admin view)."""
        now = time.time()
        rows = self._con().execute("SELECT annotator, item_id, expires_at FROM leases WHERE counted = 1 "
                                   "AND expires_at >= ? ORDER BY expires_at", (now,))
        return [{"annotator": r["annotator"], "item_id": r["item_id"], "seconds_left": round(r["expires_at"] - now)}
                for r in rows]

    def incomplete_items(self, overlap: int | None = None) -> list[dict[str, Any]]:
        """Items (gold items left out) with fewer than ``overlap`` rankings: item_id, ranked, leased
        (live leases), skipped (annotators who skipped it), in import order."""
        overlap = self.overlap if overlap is None else overlap
        rows = self._con().execute(
            f"""SELECT i.item_id,
                   (SELECT COUNT(DISTINCT annotator) FROM labels l WHERE l.item_id = i.item_id AND l.skipped = 0
                       AND {_LATEST}) AS ranked,
                   (SELECT COUNT(*) FROM leases x WHERE x.item_id = i.item_id AND x.counted = 1
                       AND x.expires_at >= :now) AS leased,
                   (SELECT COUNT(DISTINCT annotator) FROM labels l WHERE l.item_id = i.item_id AND l.skipped = 1
                       AND {_LATEST}) AS skipped
                FROM items i WHERE NOT EXISTS (SELECT 1 FROM gold_items g WHERE g.item_id = i.item_id)
                ORDER BY i.seq""", {"now": time.time()})
        return [dict(r) for r in rows if r["ranked"] < overlap]

    def progress(self, annotator: str, overlap: int) -> dict[str, int]:
        """{"mine": items this annotator has labelled (skips included), "done_items": items with
        ``overlap`` non-skipped labels, "total_items": all items}; gold items are not counted."""
        con = self._con()
        mine = con.execute(
            "SELECT COUNT(DISTINCT item_id) FROM labels WHERE annotator = ?", (annotator,)
        ).fetchone()[0]
        not_gold = "NOT EXISTS (SELECT 1 FROM gold_items g WHERE g.item_id = {col})"
        done = con.execute(
            f"""SELECT COUNT(*) FROM (SELECT item_id FROM labels l WHERE skipped = 0 AND {_LATEST}
                AND {not_gold.format(col='l.item_id')}
                GROUP BY item_id HAVING COUNT(DISTINCT annotator) >= ?)""", (overlap,),
        ).fetchone()[0]
        total = con.execute(f"SELECT COUNT(*) FROM items i WHERE {not_gold.format(col='i.item_id')}").fetchone()[0]
        return {"mine": mine, "done_items": done, "total_items": total}

    # -- drafts --------------------------------------------------------------------------------

    def save_draft(self, annotator: str, item_id: str, draft: dict[str, Any]) -> None:
        """Store work in progress for (annotator, item), replacing the previous draft."""
        with self._write() as con:
            con.execute(
                "INSERT OR REPLACE INTO drafts(annotator, item_id, draft, updated_at) VALUES (?, ?, ?, ?)",
                (annotator, str(item_id), json.dumps(draft), time.time()),
            )

    def load_draft(self, annotator: str, item_id: str) -> dict[str, Any] | None:
        row = self._con().execute(
            "SELECT draft FROM drafts WHERE annotator = ? AND item_id = ?", (annotator, str(item_id))
        ).fetchone()
        return json.loads(row["draft"]) if row else None

    # -- summaries -----------------------------------------------------------------------------

    def counts_by_annotator(self) -> list[dict[str, Any]]:
        """Per annotator: current labels, skips, flags and revisions (rows that supersede another)."""
        rows = self._con().execute(
            f"""SELECT annotator,
                       SUM(CASE WHEN {_LATEST} AND skipped = 0 THEN 1 ELSE 0 END) AS labelled,
                       SUM(CASE WHEN {_LATEST} AND skipped = 1 THEN 1 ELSE 0 END) AS skipped,
                       SUM(CASE WHEN {_LATEST} AND flagged = 1 THEN 1 ELSE 0 END) AS flagged,
                       SUM(CASE WHEN supersedes IS NOT NULL THEN 1 ELSE 0 END) AS revisions,
                       MAX(created_at) AS last_at
                FROM labels l GROUP BY annotator ORDER BY annotator"""
        )
        return [dict(r) for r in rows]
