"""The publisher against a real Mosquitto: status, Will, ordered at-least-once delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from broker import Subscriber

from agent.config_models import MqttConfig
from agent.outbox import Outbox
from agent.publisher import Publisher

PREFIX, DEVICE = "pdm", "gw-test"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RecordingLog:
    """Stands in for a structlog logger and keeps what was logged."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def _rec(self, level):
        return lambda event, **kw: self.lines.append((level, event, kw))

    def __getattr__(self, level):
        return self._rec(level)

    def events(self, needle: str) -> list[str]:
        return [e for _, e, _ in self.lines if needle in e]


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / "outbox.sqlite"), max_bytes=10_000_000)
    yield box
    box.close()


def make_publisher(broker, outbox) -> Publisher:
    mqtt = MqttConfig(host=broker.host, port=broker.port, client_id="pdm-agent-test", topic_prefix=PREFIX,
                      reconnect_min_s=0.2, reconnect_max_s=0.5, max_inflight=5)
    return Publisher(mqtt, outbox, lambda: {"uptime_s": 1.5, "outbox": outbox.depth()}, device_id=DEVICE,
                     version="9.9.9", log=RecordingLog())


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def put_rows(outbox, n, start=0, sensors=("pump1", "fan2", "motor3")):
    for i in range(start, start + n):
        sensor = sensors[i % len(sensors)]
        kind = "alert" if i % 4 == 0 else "aggregate"
        payload = json.dumps({"id": i, "sensor": sensor}).encode()
        outbox.put(f"{PREFIX}/{DEVICE}/{sensor}/{kind}", payload, kind, sensor)


def data_ids(messages) -> list[int]:
    return [json.loads(m.payload)["id"] for m in messages if not m.topic.endswith("/status")]


def assert_ordered_per_sensor(messages):
    """Among first deliveries (duplicates allowed), each sensor's ids only grow."""
    seen, last = set(), {}
    for m in messages:
        if m.topic.endswith("/status"):
            continue
        body = json.loads(m.payload)
        if body["id"] in seen:
            continue
        seen.add(body["id"])
        assert body["id"] > last.get(body["sensor"], -1), f"out of order for {body['sensor']}: {body['id']}"
        last[body["sensor"]] = body["id"]


def status(messages, state):
    return [json.loads(m.payload) for m in messages if m.topic.endswith("/status")
            and json.loads(m.payload)["state"] == state]


def test_topic():
    assert Publisher.join_topic("pdm", "gw", "pump1", "alert") == "pdm/gw/pump1/alert"


def test_online_status_is_retained_with_version_and_health(broker, outbox):
    pub = make_publisher(broker, outbox)
    pub.start()
    try:
        first = Subscriber(broker.host, broker.port, [pub.topic("status")])
        first.wait_for(lambda ms: status(ms, "online"))
        first.close()
        # A subscriber that comes later still gets the status: it is retained.
        sub = Subscriber(broker.host, broker.port, [pub.topic("status")])
        got = sub.wait_for(lambda ms: status(ms, "online"))
        sub.close()
        assert got[0].retain
        body = status(got, "online")[0]
        assert body["version"] == "9.9.9"
        assert body["uptime_s"] == 1.5 and "outbox" in body
        assert body["ts"].endswith("Z")
    finally:
        pub.stop()


def test_rows_arrive_in_order_and_leave_the_outbox_on_puback(broker, outbox):
    sub = Subscriber(broker.host, broker.port, [f"{PREFIX}/{DEVICE}/+/alert", f"{PREFIX}/{DEVICE}/+/aggregate"])
    put_rows(outbox, 60)
    pub = make_publisher(broker, outbox)
    pub.start()
    try:
        got = sub.wait_for(lambda ms: len(ms) >= 60)
        assert data_ids(got) == list(range(60))  # one connection, no outage: exact global order
        assert [m.topic for m in got][:2] == [f"{PREFIX}/{DEVICE}/pump1/alert", f"{PREFIX}/{DEVICE}/fan2/aggregate"]
        wait_until(lambda: outbox.pending() == 0)
        assert pub.published == 60
        # Rows put later, while connected, follow without a restart.
        put_rows(outbox, 5, start=60)
        got = sub.wait_for(lambda ms: len(ms) >= 65)
        assert data_ids(got) == list(range(65))
    finally:
        pub.stop()
        sub.close()


def test_starts_without_broker_buffers_and_delivers_when_it_comes(persistent_broker, outbox):
    broker = persistent_broker
    sub = Subscriber(broker.host, broker.port, [f"{PREFIX}/{DEVICE}/#"], client_id="observer")
    broker.stop()  # the observer's session (and subscription) persists across the outage
    pub = make_publisher(broker, outbox)
    pub.start()
    try:
        put_rows(outbox, 30)
        time.sleep(1.2)  # several failed connection attempts
        assert not pub.connected
        assert outbox.pending() == 30
        # One line per state change, not one per retry.
        assert len(pub.log.events("broker unreachable, buffering in outbox (")) == 1
        broker.start()
        got = sub.wait_for(lambda ms: set(data_ids(ms)) >= set(range(30)), timeout=15)
        assert_ordered_per_sensor(got)
        wait_until(lambda: outbox.pending() == 0)
        assert pub.log.events("broker connected")
    finally:
        pub.stop()
        sub.close()


def test_broker_restart_mid_stream_loses_nothing(persistent_broker, outbox):
    broker = persistent_broker
    sub = Subscriber(broker.host, broker.port, [f"{PREFIX}/{DEVICE}/+/alert", f"{PREFIX}/{DEVICE}/+/aggregate"],
                     client_id="observer")
    pub = make_publisher(broker, outbox)
    pub.start()
    n = 300

    def producer():
        for i in range(0, n, 10):
            put_rows(outbox, 10, start=i)
            time.sleep(0.01)

    thread = threading.Thread(target=producer)
    try:
        thread.start()
        wait_until(lambda: len(sub.snapshot()) >= 40)
        broker.stop()
        time.sleep(0.3)
        broker.start()
        thread.join()
        got = sub.wait_for(lambda ms: set(data_ids(ms)) >= set(range(n)), timeout=20)
        assert_ordered_per_sensor(got)
        wait_until(lambda: outbox.pending() == 0)
        assert len(pub.log.events("broker unreachable")) == 1
    finally:
        thread.join()
        pub.stop()
        sub.close()


def test_stop_publishes_retained_offline_and_keeps_undelivered_rows(broker, outbox):
    pub = make_publisher(broker, outbox)
    pub.start()
    wait_until(lambda: pub.connected)
    pub.stop()
    assert not pub.connected
    sub = Subscriber(broker.host, broker.port, [pub.topic("status")])
    got = sub.wait_for(lambda ms: len(ms) >= 1)
    sub.close()
    assert got[0].retain
    assert json.loads(got[0].payload)["state"] == "offline"
    # Rows put after stop stay in the outbox for the next publisher.
    put_rows(outbox, 3)
    assert outbox.pending() == 3


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[3])
from agent.config_models import MqttConfig
from agent.outbox import Outbox
from agent.publisher import Publisher
box = Outbox(sys.argv[4], max_bytes=1_000_000)
pub = Publisher(MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), client_id=sys.argv[2], topic_prefix="pdm"),
                box, dict, device_id="gw-test", version="9.9.9")
pub.start()
while not pub.connected:
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(60)
"""


def test_last_will_says_offline_when_the_agent_dies(broker, tmp_path):
    sub = Subscriber(broker.host, broker.port, [f"{PREFIX}/{DEVICE}/status"])
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(broker.port), "pdm-agent-will", ROOT, str(tmp_path / "child.sqlite")],
        stdout=subprocess.PIPE,
    )
    try:
        while (line := proc.stdout.readline()) != b"connected\n":  # skip its log lines
            assert line, "the child publisher exited before connecting"
        sub.wait_for(lambda ms: status(ms, "online"))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = sub.wait_for(lambda ms: status(ms, "offline"))
        will = status(got, "offline")[0]
        assert will["version"] == "9.9.9" and will["ts"].endswith("Z")
        # The Will cannot know when the connection was lost: it says what its ts is.
        assert will["will"] is True and will["connected_at"] == will["ts"] and "connect time" in will["reason"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
    # It is retained: a dashboard that connects later sees the device offline.
    late = Subscriber(broker.host, broker.port, [f"{PREFIX}/{DEVICE}/status"])
    got = late.wait_for(lambda ms: len(ms) >= 1)
    late.close()
    assert got[0].retain and json.loads(got[0].payload)["state"] == "offline"
