"""The outbox: order, states, the size bound's drop policy, and surviving a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from agent.outbox import ROW_OVERHEAD_BYTES, Message, Outbox


@pytest.fixture
def box(tmp_path):
    b = Outbox(str(tmp_path / "outbox.sqlite"), max_bytes=1_000_000)
    yield b
    b.close()


def test_put_claim_ack_in_order(box):
    ids = [box.put(f"p/d/s{i % 3}/alert", f"m{i}".encode(), "alert", f"s{i % 3}") for i in range(7)]
    assert ids == sorted(ids)
    first = box.claim(4)
    assert [m.id for m in first] == ids[:4]
    assert first[0] == Message(ids[0], "p/d/s0/alert", b"m0", "alert", "s0")
    # Claimed rows are not claimed again; the next claim continues after them.
    assert [m.id for m in box.claim(10)] == ids[4:]
    assert box.claim(10) == []
    assert box.depth() == {"alerts": 0, "aggregates": 0, "inflight": 7}
    box.ack([m.id for m in first])
    assert box.depth() == {"alerts": 0, "aggregates": 0, "inflight": 3}
    assert box.pending() == 3


def test_requeue_returns_inflight_rows_oldest_first(box):
    for i in range(5):
        box.put("t", bytes([i]), "aggregate", "s")
    claimed = box.claim(3)
    box.ack([claimed[1].id])  # PUBACKs may come for some rows only
    assert box.requeue_inflight() == 2
    assert [m.payload for m in box.claim(10)] == [b"\x00", b"\x02", b"\x03", b"\x04"]


def test_depth_counts_kinds(box):
    box.put("a", b"1", "alert", "s")
    box.put("g", b"2", "aggregate", "s")
    box.put("g", b"3", "aggregate", "s")
    assert box.depth() == {"alerts": 1, "aggregates": 2, "inflight": 0}
    with pytest.raises(ValueError):
        box.put("x", b"", "raw", "s")


def _row(payload_len: int) -> int:
    return payload_len + len("t") + len("s") + ROW_OVERHEAD_BYTES


def test_bound_drops_oldest_aggregates_first(tmp_path):
    box = Outbox(str(tmp_path / "o.sqlite"), max_bytes=5 * _row(100))
    alert1 = box.put("t", b"A" * 100, "alert", "s")
    aggs = [box.put("t", bytes([i]) * 100, "aggregate", "s") for i in range(3)]
    alert2 = box.put("t", b"B" * 100, "alert", "s")
    assert box.dropped == {"alert": 0, "aggregate": 0}
    # The store is full: each new row pushes out the oldest aggregate, never an alert.
    alert3 = box.put("t", b"C" * 100, "alert", "s")
    new_agg = box.put("t", b"\xff" * 100, "aggregate", "s")
    assert box.dropped == {"alert": 0, "aggregate": 2}
    assert box.size_bytes <= box.max_bytes
    assert [m.id for m in box.claim(10)] == [alert1, aggs[2], alert2, alert3, new_agg]
    box.close()


def test_bound_drops_alerts_only_when_no_aggregate_is_left(tmp_path):
    box = Outbox(str(tmp_path / "o.sqlite"), max_bytes=3 * _row(100))
    first = box.put("t", b"A" * 100, "alert", "s")
    box.put("t", b"g" * 100, "aggregate", "s")
    alerts = [box.put("t", bytes([i]) * 100, "alert", "s") for i in range(3)]
    assert box.dropped == {"alert": 1, "aggregate": 1}
    assert [m.id for m in box.claim(10)] == alerts
    assert first not in alerts
    # Into a store full of alerts, a new aggregate is itself the oldest aggregate: dropped.
    box.put("t", b"h" * 100, "aggregate", "s")
    assert box.dropped == {"alert": 1, "aggregate": 2}
    assert box.depth() == {"alerts": 0, "aggregates": 0, "inflight": 3}
    box.close()


def test_dropped_counters_and_rows_survive_reopen(tmp_path):
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path, max_bytes=2 * _row(10))
    for i in range(4):
        box.put("t", bytes([i]) * 10, "aggregate", "s")
    box.claim(1)  # in flight when we "crash"
    box.close()
    again = Outbox(path, max_bytes=2 * _row(10))
    assert again.dropped == {"alert": 0, "aggregate": 2}
    # The row in flight at close went back to ready, still first in line.
    assert again.depth() == {"alerts": 0, "aggregates": 2, "inflight": 0}
    assert [m.payload for m in again.claim(5)] == [b"\x02" * 10, b"\x03" * 10]
    assert again.size_bytes == 2 * _row(10)
    again.close()


CRASHER = """
import os, sys
sys.path.insert(0, sys.argv[2])
from agent.outbox import Outbox
box = Outbox(sys.argv[1], max_bytes=10_000_000)
for i in range(50):
    box.put("p/d/s/alert", str(i).encode(), "alert" if i % 2 else "aggregate", "s")
box.claim(20)
print("ready", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_rows_survive_kill_9(tmp_path):
    path = str(tmp_path / "o.sqlite")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, path, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    box = Outbox(path, max_bytes=10_000_000)
    assert box.depth() == {"alerts": 25, "aggregates": 25, "inflight": 0}
    assert [int(m.payload) for m in box.claim(100)] == list(range(50))
    box.close()


def test_concurrent_put_and_claim_lose_nothing(box):
    n = 400

    def producer():
        for i in range(n):
            box.put("t", str(i).encode(), "aggregate", "s")

    thread = threading.Thread(target=producer)
    thread.start()
    seen: list[int] = []
    while len(seen) < n:
        batch = box.claim(7)
        seen.extend(int(m.payload) for m in batch)
        box.ack(m.id for m in batch)
        if not batch and not thread.is_alive() and box.pending() == 0:
            break
    thread.join()
    assert seen == list(range(n))
    assert box.pending() == 0
