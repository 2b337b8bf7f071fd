"""Serial trouble: an unplugged sensor, and a line that spews random bytes. Real ptys, real agent."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

from agentproc import lines_sensor, rss_mib, start_agent, start_simulator, stop, write_config
from broker import Subscriber
from drivers.pty_server import format_lines, open_pty_link
from drivers.simulator import Machine


def alerts(sub: Subscriber, kind: str) -> list[dict]:
    out = [json.loads(m.payload) for m in sub.snapshot() if m.topic.endswith("/alert")]
    return [a for a in out if a.get("kind") == kind]


def test_unplugged_sensor_goes_offline_and_recovers_without_restart(broker, tmp_path):
    link = tmp_path / "ttyUSB-by-id"
    sim = start_simulator(link)
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=1,
                       sensors=[lines_sensor("pump1", link, learn_seconds=8)])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/aggregate") for m in ms), 20)
        stop(sim)  # the pty closes and the link disappears: a USB adapter pulled out
        sub.wait_for(lambda ms: any(a["level"] == "alarm" for a in alerts(sub, "sensor_offline")), 30)
        # The alarm keeps its own rule: raised once the port has been silent for `threshold`
        # seconds (health.offline_after_s, default 10), not the moment the port vanished.
        alarm = next(a for a in alerts(sub, "sensor_offline") if a["level"] == "alarm")
        assert alarm["threshold"] == 10.0
        assert alarm["reason"][0]["feature"] == "seconds_without_data"
        assert alarm["reason"][0]["value"] >= alarm["threshold"]
        sim = start_simulator(link)  # plugged back in: a new /dev/pts node behind the same path
        replugged = time.monotonic()
        sub.wait_for(lambda ms: any(a["level"] == "clear" for a in alerts(sub, "sensor_offline")), 30)
        recovery = time.monotonic() - replugged
        n = len(sub.snapshot())
        sub.wait_for(lambda ms: any(m.topic.endswith("/aggregate") for m in ms[n:]), 10)
        print(f"\nunplug -> replug: data flowing again {recovery:.1f} s after the device came back")
        assert agent.poll() is None, "the agent must recover without a restart"
    finally:
        assert stop(agent) == 0
        stop(sim)
        sub.close()


class PtyWriter(threading.Thread):
    """Plays a script of phases into a pty at 3200 samples/s: ('lines', machine, seconds) or
    ('garbage', None, seconds)."""

    def __init__(self, link, script, rate=3200):
        super().__init__(daemon=True)
        self.master, self.slave, _ = open_pty_link(str(link))
        self.script, self.rate = script, rate
        self.phase = None
        self.done = threading.Event()

    def run(self):
        rng = np.random.default_rng(7)
        try:
            for kind, machine, seconds in self.script:
                self.phase = kind
                start = time.monotonic()
                while time.monotonic() - start < seconds and not self.done.is_set():
                    block = int(self.rate * 0.02)
                    if kind == "lines":
                        data = format_lines(machine.generate(block))
                    else:
                        data = rng.integers(0, 256, size=block * 30, dtype=np.uint8).tobytes()
                    os.write(self.master, data)
                    time.sleep(0.02)
        except OSError:
            pass
        finally:
            self.phase = "end"


def test_random_bytes_on_the_line_never_crash_and_alerts_still_work(broker, tmp_path):
    link = tmp_path / "ttyFUZZ"
    healthy = Machine(rate=3200, seed=5)
    faulty = Machine(rate=3200, seed=5, fault="outer-race", fault_at=0.0)
    writer = PtyWriter(link, [("lines", healthy, 14), ("garbage", None, 6), ("lines", healthy, 4),
                              ("lines", faulty, 40)])
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=2,
                       sensors=[lines_sensor("pump1", link, learn_seconds=8)])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, tmp_path / "agent.log")
    writer.start()
    try:
        while writer.phase != "garbage":
            time.sleep(0.1)
        rss_before = rss_mib(agent.pid)
        while writer.phase == "garbage":
            time.sleep(0.1)
        rss_after = rss_mib(agent.pid)
        assert agent.poll() is None
        sub.wait_for(lambda ms: alerts(sub, "anomaly"), 40)
        status = [json.loads(m.payload) for m in sub.snapshot() if m.topic.endswith("/status")]
        sub.wait_for(lambda ms: any(json.loads(m.payload).get("sensors", {}).get("pump1", {})
                                    .get("line_errors", {}).get("not_a_number", 0) > 0
                                    for m in ms if m.topic.endswith("/status")), 40)
        print(f"\nrandom bytes for 6 s: agent RSS {rss_before:.1f} MiB before, {rss_after:.1f} MiB after; "
              f"anomaly alert still raised after the garbage")
        assert rss_after < rss_before + 20
        assert status is not None
    finally:
        writer.done.set()
        assert stop(agent) == 0
        sub.close()
        for fd in (writer.master, writer.slave):
            try:
                os.close(fd)
            except OSError:
                pass
