"""Where messages wait for the broker when the disk fails: damaged file, read-only dir, full disk.

The agent's job is to watch machines; a failing SD card must not stop that. `open_store` gives
the publisher and the pipeline one queue with the `Outbox` interface in every case:

* A damaged outbox file (``file is not a database``, ``database disk image is malformed``,
  found at open or later) is renamed ``outbox.sqlite.corrupt-<UTC time>`` (with its -wal and
  -shm), one error names it, and a new outbox starts in its place.
* A state directory that cannot be written (read-only file system, no permission, no such
  device) gives **degraded** mode: a bounded in-memory queue (`MEMORY_QUEUE_BYTES`, or the
  configured outbox bound if smaller), same drop policy as the outbox (oldest aggregates
  first, alerts only when no aggregate is left). The disk is tried again every
  `RETRY_DISK_S`. Rows in memory are lost if the agent stops.
* A write that fails (disk full, I/O error) puts that row in the same memory queue, so a
  connected publisher still sends it at once, alerts first; nothing waits for the disk. Rows
  in memory go back to the disk as soon as it takes writes again.

`state()` says which of these holds, for the status topic: ``{"state": "ok" | "degraded",
"reason": words, "path": file}``. Errors are one line naming the path and the cause in words
(`describe`), never a traceback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable

from agent.logs import Every
from agent.memory_queue import MemoryQueue
from agent.outbox import KINDS, Message, Outbox

MEMORY_QUEUE_BYTES = 4 * 2**20  # in-memory bound while the disk refuses writes (RAM is small too)
UNSAVED_MAX = 10_000  # records offer() keeps while even put() fails
RETRY_DISK_S = 60.0  # how often an unusable state directory is tried again

_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def is_damaged(exc: BaseException) -> bool:
    """True when `exc` says the SQLite file itself is damaged (not full, not read-only)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPT_CODES:
        return True
    text = str(exc)
    return "malformed" in text or "not a database" in text


def describe(exc: BaseException) -> str:
    """The cause of a storage error in words an operator can act on.

    >>> describe(OSError(errno.EROFS, "Read-only file system"))
    'read-only file system (remount it read-write, or set storage.dir to a writable place)'
    >>> describe(sqlite3.OperationalError("database or disk is full"))
    'disk full (free space, or lower storage.max_outbox_mb)'
    """
    text = str(exc)
    err = getattr(exc, "errno", None)
    if err == errno.ENOSPC or "disk is full" in text:
        return "disk full (free space, or lower storage.max_outbox_mb)"
    if err == errno.EROFS or "readonly" in text or "read-only" in text.lower():
        return "read-only file system (remount it read-write, or set storage.dir to a writable place)"
    if err in (errno.EACCES, errno.EPERM):
        return "no permission to write (check the owner of storage.dir)"
    if err in (errno.ENOTDIR, errno.ENOENT) or "unable to open" in text:
        return "cannot create or open the file (is storage.dir a writable directory?)"
    if is_damaged(exc):
        return "the file is damaged (not a valid SQLite database)"
    if err == errno.EIO or "disk I/O error" in text:
        return "disk I/O error (the storage device may be failing)"
    return f"{type(exc).__name__}: {text}"


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class Store:
    """The disk `Outbox` when it works, a `MemoryQueue` for what it will not take.

    Same interface as `Outbox` (put, claim, ack, set_aside, requeue_inflight, depth,
    pending, size_bytes, dropped, rejected, close); `put` never raises. Claims take memory
    alerts first, then the disk's rows in order, then memory aggregates.
    """

    def __init__(self, directory: str, max_bytes: int, log) -> None:
        self.dir = directory
        self.path = os.path.join(directory, "outbox.sqlite")
        self.max_bytes = max_bytes
        self.log = log
        self.memory = MemoryQueue(min(max_bytes, MEMORY_QUEUE_BYTES))
        self.disk: Outbox | None = None
        self.reason: str | None = None  # why rows are in memory (None: the disk takes everything)
        self._tried = 0.0
        self._lock = threading.RLock()  # serialises the disk's open/replace with its use
        self._unsaved: deque = deque(maxlen=UNSAVED_MAX)  # see offer()
        self._unsaved_lock = threading.Lock()
        self._warn_put = Every(30.0)
        self._open_disk()

    # -- opening, damage and retry -------------------------------------------------

    def _open_disk(self) -> None:
        """Open (or create) the outbox; a damaged file is moved aside; an unusable dir -> memory."""
        self._tried = time.monotonic()
        try:
            os.makedirs(self.dir, exist_ok=True)
            # SQLite says only "unable to open database file"; a probe gets the real cause
            # (read-only file system, permission) for the message.
            probe = os.path.join(self.dir, ".pdm-write-probe")
            with open(probe, "w"):
                pass
            os.unlink(probe)
            try:
                self.disk = self._checked_open()
            except sqlite3.DatabaseError as exc:
                if not is_damaged(exc):
                    raise
                self._move_aside(exc)
                self.disk = self._checked_open()
        except (OSError, sqlite3.Error) as exc:
            self.disk = None
            self._degrade(f"storage unusable: {describe(exc)}")
            return
        if self.reason is not None and self.reason.startswith("storage unusable"):
            self.log.info("storage usable again; messages go to the outbox file", path=self.path)
        self.reason = None
        self._move_memory_to_disk()

    def _checked_open(self) -> Outbox:
        box = Outbox(self.path, self.max_bytes)
        try:
            result = box._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError:
            box.close()
            raise
        if result != "ok":
            box.close()
            raise sqlite3.DatabaseError(f"database disk image is malformed ({result})")
        return box

    def _move_aside(self, exc: BaseException) -> None:
        aside = f"{self.path}.corrupt-{_stamp()}"
        if self.disk is not None:
            try:
                self.disk.close()
            except sqlite3.Error:
                pass
            self.disk = None
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        self.log.error("outbox file damaged; moved aside and a new outbox started "
                       "(messages in it were not sent; the file is kept for inspection)",
                       path=self.path, moved_to=aside, cause=describe(exc))

    def _degrade(self, reason: str, what: str | None = None) -> None:
        # One error per episode (per cause): a disk that stays full is not news every second.
        if self.reason != reason:
            self.log.error(f"{what + ': ' if what else ''}{reason}; messages are kept in memory (bounded) "
                           "and sent when the broker is up", path=self.path,
                           memory_bound_bytes=self.memory.max_bytes, in_memory=self.memory.pending())
        self.reason = reason

    def _disk_failed(self, exc: BaseException, what: str) -> None:
        """A disk operation failed at run time: replace a damaged file, else note why."""
        if is_damaged(exc):
            try:
                self._move_aside(exc)
                self.disk = self._checked_open()
                return
            except (OSError, sqlite3.Error) as exc2:
                self.disk = None
                self._degrade(f"storage unusable: {describe(exc2)}")
                return
        self._degrade(describe(exc), what)

    def _move_memory_to_disk(self) -> None:
        """Rows kept in memory (not in flight) go back to the disk, oldest first, while it takes them."""
        if self.disk is None or not self.memory.pending():
            return
        ready = self.memory.take_ready()
        for i, (_rid, row) in enumerate(ready):
            try:
                self.disk.put(*row)
            except (OSError, sqlite3.Error):
                for _rid2, rest in ready[i:]:  # still refused: keep them, in order
                    self.memory.put(*rest)
                return

    def retry(self) -> None:
        """Called from the service tick: retry an unusable disk, and move memory rows back."""
        with self._lock:
            if self.disk is None:
                if time.monotonic() - self._tried >= RETRY_DISK_S:
                    self._open_disk()
                return
            if self.reason is not None:
                self._move_memory_to_disk()
                if not self.memory.pending() and self._disk_writable():
                    self.log.info("disk takes writes again; nothing is held in memory", path=self.path)
                    self.reason = None

    def _disk_writable(self) -> bool:
        """A small committed write: does the disk take writes again? (lock held)"""
        try:
            self.disk._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('probe.write', 0)")
            return True
        except (OSError, sqlite3.Error):
            return False

    # -- the Outbox interface ------------------------------------------------------

    def put(self, topic: str, payload: bytes, kind: str, key: str) -> int:
        with self._lock:
            if self.disk is not None:
                try:
                    return self.disk.put(topic, payload, kind, key)
                except (OSError, sqlite3.Error) as exc:
                    self._disk_failed(exc, "outbox write failed")
                    if self.disk is not None and is_damaged(exc):
                        try:
                            return self.disk.put(topic, payload, kind, key)  # the fresh file
                        except (OSError, sqlite3.Error):
                            pass
            elif time.monotonic() - self._tried >= RETRY_DISK_S:
                self._open_disk()
                if self.disk is not None:
                    return self.put(topic, payload, kind, key)
            return self.memory.put(topic, payload, kind, key)

    def offer(self, topic: str, payload: bytes, kind: str, key: str) -> None:
        """`put` for a caller that must not block on trouble: if `put` fails all the same (a bug, a
        full disk in the memory fallback), records wait in a bounded in-process list (UNSAVED_MAX,
        oldest dropped) and are retried, oldest first, with the next offer or `flush_unsaved()`."""
        with self._unsaved_lock:
            self._unsaved.append((topic, payload, kind, key))
        self.flush_unsaved()

    def flush_unsaved(self) -> None:
        """Retry the records `offer` could not put, oldest first; stop at the first that fails again."""
        with self._unsaved_lock:
            while self._unsaved:
                try:
                    self.put(*self._unsaved[0])
                except Exception as exc:
                    if self._warn_put.ready():
                        self.log.error("outbox write failed; records kept in memory and retried",
                                       pending=len(self._unsaved), error=str(exc))
                    return
                self._unsaved.popleft()

    def claim(self, limit: int) -> list[Message]:
        out = self.memory.claim(limit, kind="alert")
        with self._lock:
            if self.disk is not None and len(out) < limit:
                try:
                    out += self.disk.claim(limit - len(out))
                except (OSError, sqlite3.Error) as exc:
                    self._disk_failed(exc, "outbox read failed")
        if len(out) < limit:
            out += self.memory.claim(limit - len(out))
        return out

    def ack(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self.memory.ack([i for i in ids if i < 0])
        disk_ids = [i for i in ids if i > 0]
        with self._lock:
            if disk_ids and self.disk is not None:
                try:
                    self.disk.ack(disk_ids)
                except (OSError, sqlite3.Error) as exc:
                    # Not deleted: the rows go back to ready at the next connect and are sent
                    # again (a duplicate, which at-least-once delivery allows).
                    self._disk_failed(exc, "outbox delete failed")

    def set_aside(self, row_id: int) -> Message | None:
        if row_id < 0:
            return self.memory.set_aside(row_id)
        with self._lock:
            try:
                return self.disk.set_aside(row_id) if self.disk is not None else None
            except (OSError, sqlite3.Error) as exc:
                self._disk_failed(exc, "outbox write failed")
                return None

    def requeue_inflight(self) -> int:
        n = self.memory.requeue_inflight()
        with self._lock:
            if self.disk is not None:
                try:
                    n += self.disk.requeue_inflight()
                except (OSError, sqlite3.Error) as exc:
                    self._disk_failed(exc, "outbox write failed")
        return n

    def _disk_value(self, get, default):
        with self._lock:
            if self.disk is None:
                return default
            try:
                return get(self.disk)
            except (OSError, sqlite3.Error):
                return default

    def depth(self) -> dict[str, int]:
        """Rows waiting by kind and in flight (disk + memory), and how many are in memory."""
        disk = self._disk_value(lambda d: d.depth(), {"alerts": 0, "aggregates": 0, "inflight": 0})
        mem = self.memory.depth()
        out = {k: disk[k] + mem[k] for k in disk}
        out["in_memory"] = sum(mem.values())
        return out

    def pending(self) -> int:
        return self._disk_value(lambda d: d.pending(), 0) + self.memory.pending()

    @property
    def size_bytes(self) -> int:
        return self._disk_value(lambda d: d.size_bytes, 0) + self.memory.size_bytes

    @property
    def dropped(self) -> dict[str, int]:
        disk, mem = self._disk_value(lambda d: d.dropped, dict.fromkeys(KINDS, 0)), self.memory.dropped
        return {k: disk[k] + mem[k] for k in KINDS}

    @property
    def rejected(self) -> dict[str, int]:
        disk, mem = self._disk_value(lambda d: d.rejected, dict.fromkeys(KINDS, 0)), self.memory.rejected
        return {k: disk[k] + mem[k] for k in KINDS}

    def state(self) -> dict:
        """For the status topic: is everything on disk, and if not, why."""
        with self._lock:
            if self.reason is None and self.disk is not None:
                return {"state": "ok", "path": self.path}
            return {"state": "degraded", "reason": self.reason or "storage unusable", "path": self.path,
                    "in_memory": self.memory.pending(), "memory_bound_bytes": self.memory.max_bytes}

    def close(self) -> None:
        if self.memory.pending():
            self.log.warning("messages held in memory are lost at stop (the disk did not take them)",
                             path=self.path, lost=self.memory.pending())
        with self._lock:
            if self.disk is not None:
                try:
                    self.disk.close()
                except sqlite3.Error:
                    pass
