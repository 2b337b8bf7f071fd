"""A bounded in-memory queue with the `Outbox` interface, for rows the disk will not take.

Used by `agent.storage.Store` while the state directory is unusable or a write fails (disk
full). The bound and the drop policy are the outbox's: content at most `max_bytes`; when a
`put` pushes it over, the oldest aggregates not in flight go first, alerts only when no
aggregate is left. Ids are negative so they never clash with the outbox's row ids.
Nothing here survives a restart.

>>> q = MemoryQueue(max_bytes=10_000)
>>> q.put("pdm/gw/pump1/alert", b"{}", "alert", "pump1")
-1
>>> [m.id for m in q.claim(5)], q.depth()
([-1], {'alerts': 0, 'aggregates': 0, 'inflight': 1})
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from agent.outbox import KINDS, ROW_OVERHEAD_BYTES, Message


class MemoryQueue:
    """Bounded in-memory stand-in for `Outbox` (same methods); ids are negative, so they never
    clash with the outbox's row ids. Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._rows: dict[int, list] = {}  # id -> [topic, payload, kind, key, inflight], insertion order
        self._next = -1
        self._bytes = 0
        self._dropped = dict.fromkeys(KINDS, 0)
        self._rejected = dict.fromkeys(KINDS, 0)

    @staticmethod
    def _size(row: list) -> int:
        return len(row[1]) + len(row[0].encode()) + len(row[3].encode()) + ROW_OVERHEAD_BYTES

    def put(self, topic: str, payload: bytes, kind: str, key: str) -> int:
        row = [topic, bytes(payload), kind, key, False]
        with self._lock:
            row_id, self._next = self._next, self._next - 1
            self._rows[row_id] = row
            self._bytes += self._size(row)
            for victim_kind in ("aggregate", "alert"):  # the outbox's drop policy
                for rid in [r for r, v in self._rows.items() if v[2] == victim_kind and not v[4]]:
                    if self._bytes <= self.max_bytes:
                        break
                    self._bytes -= self._size(self._rows.pop(rid))
                    self._dropped[victim_kind] += 1
        return row_id

    def claim(self, limit: int, kind: str | None = None) -> list[Message]:
        out = []
        with self._lock:
            for rid, row in self._rows.items():
                if len(out) >= limit:
                    break
                if not row[4] and (kind is None or row[2] == kind):
                    row[4] = True
                    out.append(Message(rid, row[0], row[1], row[2], row[3]))
        return out

    def take_ready(self) -> list[tuple[int, tuple]]:
        """Remove and return every row not in flight, oldest first (to move it to the disk)."""
        with self._lock:
            ready = [(rid, tuple(row[:4])) for rid, row in self._rows.items() if not row[4]]
            for rid, row in ready:
                self._bytes -= self._size(list(row))
                del self._rows[rid]
        return ready

    def ack(self, ids: Iterable[int]) -> None:
        with self._lock:
            for rid in ids:
                row = self._rows.pop(rid, None)
                if row is not None:
                    self._bytes -= self._size(row)

    def set_aside(self, row_id: int) -> Message | None:
        with self._lock:
            row = self._rows.pop(row_id, None)
            if row is None:
                return None
            self._bytes -= self._size(row)
            self._dropped[row[2]] += 1
            self._rejected[row[2]] += 1
        return Message(row_id, row[0], row[1], row[2], row[3])

    def requeue_inflight(self) -> int:
        with self._lock:
            n = sum(1 for row in self._rows.values() if row[4])
            for row in self._rows.values():
                row[4] = False
        return n

    def depth(self) -> dict[str, int]:
        out = {"alerts": 0, "aggregates": 0, "inflight": 0}
        with self._lock:
            for row in self._rows.values():
                out["inflight" if row[4] else row[2] + "s"] += 1
        return out

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    @property
    def dropped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dropped)

    @property
    def rejected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejected)

    def close(self) -> None:
        pass
