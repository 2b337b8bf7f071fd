"""The durable outbox: every alert and aggregate waits here until the broker has it.

A single SQLite table in WAL mode is the queue between the pipeline (which puts) and the
publisher (which claims, publishes with QoS 1 and acks on PUBACK). Rows move
``ready -> inflight -> deleted`` on ack, or back to ``ready`` when the connection drops or
the agent restarts, so delivery is at least once. Rows are claimed in ``id`` order, and
since ``id`` is global insertion order, delivery is in order per ``key`` (the sensor).

Durability
    Each ``put`` is its own committed transaction, so a row survives ``kill -9`` the moment
    ``put`` returns (WAL + commit). The connection runs ``synchronous=NORMAL``: a process
    crash loses nothing, but a power cut may roll back the last few commits. For alerts
    that is not good enough (the product promises to lose no alert), so an alert's commit
    runs with ``synchronous=FULL`` (the WAL is fsynced before ``put`` returns). Alerts are
    rare and aggregates come once per interval, so the extra fsync costs nothing
    noticeable, while acks (deletes) stay at NORMAL: losing an ack to a power cut only
    means a duplicate, which at-least-once delivery allows anyway.

Bound and drop policy
    The content (payload + topic + key bytes + a fixed per-row overhead) is kept at or
    below ``max_bytes``. When a ``put`` pushes it over, the **oldest aggregates are dropped
    first** (they are summaries, and newer ones supersede them); **alerts are dropped only
    when no aggregate is left**, oldest first. The row just put can itself be dropped (an
    aggregate arriving into a store full of alerts). Every drop is counted per kind in a
    ``meta`` table, so ``dropped`` survives restarts and can be reported in health.
    Freed pages are reused by SQLite, so the file stays near the bound without VACUUM.

Examples
--------
>>> box = Outbox(":memory:", max_bytes=1_000_000)
>>> box.put("pdm/gw/pump1/alert", b'{"level":"alarm"}', "alert", "pump1")
1
>>> [m.id for m in box.claim(10)]
[1]
>>> box.depth()
{'alerts': 0, 'aggregates': 0, 'inflight': 1}
>>> box.ack([1]); box.depth()["inflight"]
0
>>> box.close()
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("alert", "aggregate")

# Rough cost of a row beyond its text: rowid, state, kind, created, b-tree cell overhead.
ROW_OVERHEAD_BYTES = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id      INTEGER PRIMARY KEY,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    kind    TEXT    NOT NULL CHECK (kind IN ('alert', 'aggregate')),
    key     TEXT    NOT NULL,
    state   TEXT    NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'inflight')),
    created REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_state ON messages (state, id);
CREATE INDEX IF NOT EXISTS messages_kind ON messages (kind, id);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_ROW_BYTES = f"length(payload) + length(CAST(topic AS BLOB)) + length(CAST(key AS BLOB)) + {ROW_OVERHEAD_BYTES}"


@dataclass(frozen=True, slots=True)
class Message:
    """One claimed outbox row, ready to publish."""

    id: int
    topic: str
    payload: bytes
    kind: str
    key: str


class Outbox:
    """Durable, bounded, thread-safe FIFO of messages waiting for the broker.

    Parameters
    ----------
    path : str
        SQLite file (``":memory:"`` for tests and doctests). Its directory must exist.
    max_bytes : int
        Bound on the stored content; see the module docstring for the drop policy.

    Notes
    -----
    Rows left ``inflight`` by a crash are returned to ``ready`` at open: their PUBACK
    never reached us, so they must be sent again.
    """

    def __init__(self, path: str, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # One connection shared by the pipeline and publisher threads; the lock
        # serialises them (SQLite would serialise writers anyway).
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._bytes = self._db.execute(f"SELECT COALESCE(SUM({_ROW_BYTES}), 0) FROM messages").fetchone()[0]
        self.requeue_inflight()

    # -- pipeline side ---------------------------------------------------------------

    def put(self, topic: str, payload: bytes, kind: str, key: str) -> int:
        """Store one message durably and return its id (the global order).

        The row is committed before this returns. If the bound is exceeded, older rows
        are dropped per the policy, possibly this one.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        payload = bytes(payload)
        size = len(payload) + len(topic.encode()) + len(key.encode()) + ROW_OVERHEAD_BYTES
        with self._lock:
            if kind == "alert":
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row_id = self._db.execute(
                        "INSERT INTO messages (topic, payload, kind, key, created) VALUES (?, ?, ?, ?, ?)",
                        (topic, payload, kind, key, time.time()),
                    ).lastrowid
                    self._bytes += size
                    self._enforce_bound()
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back on SQLITE_FULL / IOERR; a second ROLLBACK
                    # would raise "no transaction is active" and hide the real cause.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    self._bytes = self._db.execute(
                        f"SELECT COALESCE(SUM({_ROW_BYTES}), 0) FROM messages"
                    ).fetchone()[0]
                    raise
            finally:
                if kind == "alert":
                    self._db.execute("PRAGMA synchronous=NORMAL")
        return row_id

    def _enforce_bound(self) -> None:
        """Drop oldest aggregates, then oldest alerts, until content fits (lock held)."""
        for kind in ("aggregate", "alert"):
            dropped = 0
            while self._bytes > self.max_bytes:
                row = self._db.execute(
                    f"SELECT id, {_ROW_BYTES} FROM messages WHERE kind = ? ORDER BY id LIMIT 1", (kind,)
                ).fetchone()
                if row is None:
                    break
                self._db.execute("DELETE FROM messages WHERE id = ?", (row[0],))
                self._bytes -= row[1]
                dropped += 1
            if dropped:
                self._db.execute(
                    "INSERT INTO meta (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    (f"dropped.{kind}", dropped),
                )

    # -- publisher side --------------------------------------------------------------

    def claim(self, limit: int) -> list[Message]:
        """Mark up to `limit` of the oldest ready rows in flight and return them in id order."""
        if limit <= 0:
            return []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, kind, key FROM messages WHERE state = 'ready' ORDER BY id LIMIT ?",
                    (limit,),
                ).fetchall()
                if rows:
                    self._db.execute(
                        "UPDATE messages SET state = 'inflight' WHERE state = 'ready' AND id <= ?",
                        (rows[-1][0],),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return [Message(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def ack(self, ids: Iterable[int]) -> None:
        """Delete delivered rows (unknown ids, e.g. rows dropped by the bound, are ignored)."""
        ids = [int(i) for i in ids]
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row_id in ids:
                    # No DELETE ... RETURNING: Debian 11 ships SQLite 3.34.
                    row = self._db.execute(f"SELECT {_ROW_BYTES} FROM messages WHERE id = ?", (row_id,)).fetchone()
                    if row is not None:
                        self._db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
                        self._bytes -= row[0]
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def set_aside(self, row_id: int) -> Message | None:
        """Take one row the broker will not accept out of the queue, so it cannot block the
        rows behind it; count it in ``dropped`` and ``rejected``. Returns the row (None if
        it is gone already), so the caller can report its topic and size."""
        with self._lock:
            row = self._db.execute(
                f"SELECT id, topic, payload, kind, key, {_ROW_BYTES} FROM messages WHERE id = ?", (int(row_id),)
            ).fetchone()
            if row is None:
                return None
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM messages WHERE id = ?", (row[0],))
                for name in (f"dropped.{row[3]}", f"rejected.{row[3]}"):
                    self._db.execute(
                        "INSERT INTO meta (name, value) VALUES (?, 1) "
                        "ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._bytes -= row[5]
        return Message(row[0], row[1], bytes(row[2]), row[3], row[4])

    def requeue_inflight(self) -> int:
        """Return every in-flight row to ready (after a disconnect or a crash); count them."""
        with self._lock:
            return self._db.execute("UPDATE messages SET state = 'ready' WHERE state = 'inflight'").rowcount

    # -- health ----------------------------------------------------------------------

    def depth(self) -> dict[str, int]:
        """Rows waiting, by kind (ready only), and rows in flight.

        >>> box = Outbox(":memory:", max_bytes=10_000)
        >>> _ = box.put("t/a", b"x", "aggregate", "s"); box.depth()
        {'alerts': 0, 'aggregates': 1, 'inflight': 0}
        """
        with self._lock:
            rows = self._db.execute("SELECT kind, state, COUNT(*) FROM messages GROUP BY kind, state").fetchall()
        out = {"alerts": 0, "aggregates": 0, "inflight": 0}
        for kind, state, n in rows:
            out["inflight" if state == "inflight" else kind + "s"] += n
        return out

    def pending(self) -> int:
        """All rows not yet acked (ready and in flight)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    @property
    def size_bytes(self) -> int:
        """The content counted against `max_bytes`."""
        with self._lock:
            return self._bytes

    @property
    def dropped(self) -> dict[str, int]:
        """Rows given up since the file was created, per kind: dropped by the size bound, or set
        aside because the broker refused them (those are also counted in `rejected`)."""
        with self._lock:
            rows = dict(self._db.execute("SELECT name, value FROM meta WHERE name LIKE 'dropped.%'").fetchall())
        return {kind: rows.get(f"dropped.{kind}", 0) for kind in KINDS}

    @property
    def rejected(self) -> dict[str, int]:
        """Of `dropped`, the rows set aside because the broker would not take them, per kind."""
        with self._lock:
            rows = dict(self._db.execute("SELECT name, value FROM meta WHERE name LIKE 'rejected.%'").fetchall())
        return {kind: rows.get(f"rejected.{kind}", 0) for kind in KINDS}

    def close(self) -> None:
        """Close the database; rows not acked stay for the next open."""
        with self._lock:
            self._db.close()
