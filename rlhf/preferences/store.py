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

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from contextlib import contextmanager

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,        -- import order = assignment order
    item_id TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    candidate_ids TEXT NOT NULL,                  -- JSON list
    candidates TEXT NOT NULL,                     -- JSON list, same order as candidate_ids
    created_at REAL NOT NULL
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
    meta TEXT NOT NULL DEFAULT '{}'               -- JSON: vote type, display order, ...
);
CREATE INDEX IF NOT EXISTS labels_by_pair ON labels(annotator, item_id, label_id);
CREATE INDEX IF NOT EXISTS labels_by_item ON labels(item_id);
CREATE INDEX IF NOT EXISTS labels_supersedes ON labels(supersedes);
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
    PRIMARY KEY (annotator, item_id)
);
"""

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


class LabelStore:
    """Items, append-only labels, drafts and assignment leases in one SQLite file."""

    def __init__(self, db_path: str | Path, lease_seconds: float = 900.0, timeout: float = 30.0):
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_seconds = lease_seconds
        self.timeout = timeout
        self._local = threading.local()
        con = self._con()
        con.executescript(_SCHEMA)
        con.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

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
        """Import items; an item_id already present is left untouched. Returns how many were new."""
        new = 0
        now = time.time()
        with self._write() as con:
            for it in items:
                if len(it.candidate_ids) != len(it.candidates) or len(it.candidate_ids) < 2:
                    raise ValueError(f"item {it.item_id}: needs >= 2 candidates with one id each")
                if len(set(it.candidate_ids)) != len(it.candidate_ids):
                    raise ValueError(f"item {it.item_id}: duplicate candidate ids {it.candidate_ids}")
                cur = con.execute(
                    "INSERT OR IGNORE INTO items(item_id, prompt, candidate_ids, candidates, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (str(it.item_id), it.prompt, json.dumps(list(it.candidate_ids)), json.dumps(list(it.candidates)), now),
                )
                new += cur.rowcount
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
        meta: dict[str, Any] | None = None,
    ) -> Label:
        """Append a label (superseding this annotator's previous one for the item); committed on return."""
        annotator = (annotator or "").strip()
        if not annotator:
            raise ValueError("annotator name is empty: sign in before submitting")
        item = self.item(item_id)  # KeyError for an unknown item
        clean = validate_ranks(item, ranks or {}, skipped=skipped)
        with self._write() as con:
            if request_id is not None:
                row = con.execute("SELECT * FROM labels WHERE request_id = ?", (request_id,)).fetchone()
                if row is not None:
                    if row["annotator"] != annotator or row["item_id"] != item.item_id:
                        raise ValueError(f"request_id {request_id!r} was already used for another label")
                    return self._label(row)
            prev = con.execute(
                f"SELECT label_id FROM labels l WHERE annotator = ? AND item_id = ? AND {_LATEST} "
                "ORDER BY label_id DESC LIMIT 1", (annotator, item.item_id),
            ).fetchone()
            cur = con.execute(
                "INSERT INTO labels(item_id, annotator, ranks, skipped, flagged, rationale, created_at, "
                "supersedes, request_id, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.item_id, annotator, json.dumps(clean, sort_keys=True), int(bool(skipped)),
                 int(bool(flagged)), rationale or "", time.time(), prev["label_id"] if prev else None,
                 request_id, json.dumps(meta or {})),
            )
            con.execute("DELETE FROM drafts WHERE annotator = ? AND item_id = ?", (annotator, item.item_id))
            con.execute("DELETE FROM leases WHERE annotator = ? AND item_id = ?", (annotator, item.item_id))
            row = con.execute("SELECT * FROM labels WHERE label_id = ?", (cur.lastrowid,)).fetchone()
        return self._label(row)

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

    def flagged(self) -> list[Label]:
        """Current labels that flag their item as bad/unsafe."""
        return [lab for lab in self.labels() if lab.flagged]

    # -- assignment ----------------------------------------------------------------------------

    def next_item(self, annotator: str, overlap: int) -> Item | None:
        """The next item for this annotator, or None when nothing is left for them.

        Eligible: never labelled (or skipped) by this annotator, and fewer than ``overlap`` distinct
        annotators have labelled it or hold an unexpired lease on it. Items go out in import order;
        an item already leased to this annotator comes back first, so a reload shows the same task.
        """
        if overlap < 1:
            raise ValueError(f"overlap must be >= 1, got {overlap}")
        now = time.time()
        with self._write() as con:
            con.execute("DELETE FROM leases WHERE expires_at < ?", (now,))
            # An item already leased to this annotator (and not yet labelled) comes back first.
            row = con.execute(
                """SELECT i.* FROM leases x JOIN items i ON i.item_id = x.item_id
                   WHERE x.annotator = :a
                     AND NOT EXISTS (SELECT 1 FROM labels m WHERE m.item_id = i.item_id AND m.annotator = :a)
                   ORDER BY i.seq LIMIT 1""",
                {"a": annotator},
            ).fetchone()
            if row is None:  # first eligible item in import order (the scan stops at the first hit)
                row = con.execute(
                    """SELECT i.* FROM items i
                       WHERE NOT EXISTS (SELECT 1 FROM labels m WHERE m.item_id = i.item_id AND m.annotator = :a)
                         AND (SELECT COUNT(*) FROM (
                                 SELECT annotator FROM labels l WHERE l.item_id = i.item_id AND l.skipped = 0
                                     AND """ + _LATEST + """
                                 UNION
                                 SELECT annotator FROM leases x WHERE x.item_id = i.item_id)) < :n
                       ORDER BY i.seq LIMIT 1""",
                    {"a": annotator, "n": overlap},
                ).fetchone()
            if row is None:
                return None
            con.execute(
                "INSERT OR REPLACE INTO leases(annotator, item_id, expires_at) VALUES (?, ?, ?)",
                (annotator, row["item_id"], now + self.lease_seconds),
            )
        return self._item(row)

    def release(self, annotator: str, item_id: str) -> None:
        """Give a leased item back (e.g. the annotator signed out)."""
        with self._write() as con:
            con.execute("DELETE FROM leases WHERE annotator = ? AND item_id = ?", (annotator, str(item_id)))

    def progress(self, annotator: str, overlap: int) -> dict[str, int]:
        """{"mine": items this annotator has labelled (skips included), "done_items": items with
        ``overlap`` non-skipped labels, "total_items": all items}."""
        con = self._con()
        mine = con.execute(
            "SELECT COUNT(DISTINCT item_id) FROM labels WHERE annotator = ?", (annotator,)
        ).fetchone()[0]
        done = con.execute(
            f"""SELECT COUNT(*) FROM (SELECT item_id FROM labels l WHERE skipped = 0 AND {_LATEST}
                GROUP BY item_id HAVING COUNT(DISTINCT annotator) >= ?)""", (overlap,),
        ).fetchone()[0]
        total = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
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
