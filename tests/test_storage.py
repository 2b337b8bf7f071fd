"""Storage faults under the outbox, on real files: a damaged file, a full disk, no writable dir.

A full disk is a real tmpfs filled to the last byte (`mounts.tmpfs`); where the test cannot
mount (not root), it fails rather than pretending: these faults cannot be faked honestly.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3

import pytest
from mounts import tmpfs

from agent.memory_queue import MemoryQueue
from agent.outbox import Outbox
from agent.storage import Store, describe

AGG = b"x" * 1500  # about one aggregate


class _Log:
    """Collects the store's log events (structlog's testing capture, without global config)."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __getattr__(self, level):
        return lambda event, **kw: self.events.append({"level": level, "event": event, **kw})


def _real_bytes(box: Outbox) -> int:
    return box._db.execute("SELECT COALESCE(SUM(length(payload)+length(CAST(topic AS BLOB))"
                           "+length(CAST(key AS BLOB))+64),0) FROM messages").fetchone()[0]


def _fill(directory) -> object:
    ballast = open(os.path.join(directory, "ballast"), "wb", buffering=0)
    try:
        while True:
            ballast.write(b"\0" * 4096)
    except OSError:
        pass
    return ballast


def test_full_disk_keeps_size_exact_and_names_the_cause(tmp_path):
    with tmpfs(tmp_path / "full", "8m") as mounted:
        assert mounted, "needs root to mount a tmpfs"
        box = Outbox(str(tmp_path / "full" / "outbox.sqlite"), max_bytes=1_000_000)
        ballast = _fill(tmp_path / "full")
        errors = []
        for _ in range(300):
            try:
                box.put("pdm/gw/pump1/aggregate", AGG, "aggregate", "pump1")
            except sqlite3.Error as exc:
                errors.append(exc)
        assert errors, "the disk was not full"
        assert "disk is full" in str(errors[-1])  # the real cause, not "no transaction is active"
        assert describe(errors[-1]).startswith("disk full")
        assert box.size_bytes == _real_bytes(box)
        ballast.close()
        os.unlink(tmp_path / "full" / "ballast")
        ids = [box.put("pdm/gw/pump1/alert", b'{"level":"alarm"}', "alert", "pump1") for _ in range(21)]
        assert box.dropped == {"alert": 0, "aggregate": 0}
        assert box.depth()["alerts"] == len(ids) == 21
        assert box.size_bytes == _real_bytes(box)
        box.close()


def test_full_disk_rows_wait_in_memory_alerts_first_and_return_to_disk(tmp_path):
    with tmpfs(tmp_path / "full", "8m") as mounted:
        assert mounted, "needs root to mount a tmpfs"
        log = _Log()
        store = Store(str(tmp_path / "full"), 1_000_000, log)
        store.put("pdm/gw/pump1/aggregate", AGG, "aggregate", "pump1")
        ballast = _fill(tmp_path / "full")
        for _ in range(50):
            store.put("pdm/gw/pump1/aggregate", AGG, "aggregate", "pump1")
        alert = store.put("pdm/gw/pump1/alert", b'{"level":"alarm"}', "alert", "pump1")
        assert alert < 0  # in memory: the disk refused it
        assert store.state()["state"] == "degraded" and "disk full" in store.state()["reason"]
        assert store.depth()["in_memory"] >= 1
        first = store.claim(1)
        assert [m.id for m in first] == [alert]  # a connected publisher sends it now, first
        store.ack([alert])
        errors = [e for e in log.events if e["level"] == "error"]
        assert errors and "disk full" in errors[0]["event"] and errors[0]["path"].endswith("outbox.sqlite")
        ballast.close()
        os.unlink(tmp_path / "full" / "ballast")
        store.retry()
        assert store.state()["state"] == "ok"
        assert store.depth()["in_memory"] == 0
        assert store.pending() >= 2  # the memory rows are on disk now
        store.close()


@pytest.mark.parametrize("damage", ["not-a-database", "torn-page"])
def test_damaged_outbox_is_moved_aside_and_a_new_one_starts(tmp_path, damage):
    path = tmp_path / "outbox.sqlite"
    if damage == "not-a-database":
        path.write_bytes(random.Random(1).randbytes(8192))
    else:
        box = Outbox(str(path), max_bytes=10_000_000)
        for _ in range(200):
            box.put("pdm/gw/pump1/aggregate", AGG, "aggregate", "pump1")
        box.close()
        data = bytearray(path.read_bytes())
        rng = random.Random(1)
        for i in range(2 * 4096, 3 * 4096):
            data[i] = rng.randrange(256)
        path.write_bytes(bytes(data))
    log = _Log()
    store = Store(str(tmp_path), 1_000_000, log)
    assert store.state()["state"] == "ok"
    assert store.put("pdm/gw/pump1/alert", b"{}", "alert", "pump1") > 0  # on disk, in the new file
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert any(n.startswith("outbox.sqlite.corrupt-") and "-wal" not in n for n in aside), aside
    (err,) = [e for e in log.events if e["level"] == "error"]
    assert err["path"] == str(path) and "corrupt-" in err["moved_to"] and "damaged" in err["cause"]
    store.close()


def test_unwritable_state_dir_gives_a_bounded_memory_queue(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # no one, root included, can make a directory under a file
    log = _Log()
    store = Store(str(blocker / "state"), 1_000_000, log)
    state = store.state()
    assert state["state"] == "degraded" and state["reason"].startswith("storage unusable")
    assert "storage.dir" in state["reason"]
    for _ in range(2000):
        store.put("pdm/gw/pump1/aggregate", AGG, "aggregate", "pump1")
    store.put("pdm/gw/pump1/alert", b"{}", "alert", "pump1")
    assert store.size_bytes <= store.memory.max_bytes
    assert store.depth()["alerts"] == 1 and store.dropped["aggregate"] > 0 and store.dropped["alert"] == 0
    json.dumps(store.state())


def test_memory_queue_drops_aggregates_before_alerts():
    q = MemoryQueue(max_bytes=3 * (1500 + 100))
    a = q.put("t/alert", b"a" * 1500, "alert", "s")
    for _ in range(5):
        q.put("t/aggregate", AGG, "aggregate", "s")
    assert a in [m.id for m in q.claim(10)]
    assert q.dropped["alert"] == 0 and q.dropped["aggregate"] >= 3
    assert q.size_bytes <= q.max_bytes
