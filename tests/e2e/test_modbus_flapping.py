"""Transient faults must not page anyone: a Modbus slave that misses polls for a few seconds (less
than `health.offline_after_s`, default 10 s) is counted in the status (`timeouts`), and raises no
`sensor_offline` alert; one offline rule, no data for offline_after_s (issue 14, kind 4)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from agentproc import assert_clean_exit, pdm_agent, stop, wait_for_link, write_config
from broker import Subscriber


def _status(msgs):
    return [json.loads(m.payload) for m in msgs if m.topic.endswith("/status")]


def test_short_gaps_are_counted_not_alerted(broker, tmp_path):
    link = tmp_path / "ttyRS485"
    sim = pdm_agent("simulate", "--link", str(link), "--protocol", "modbus", "--preset", "qm30vt2",
                    "--baudrate", "115200", stdout=open(tmp_path / "sim.log", "wb"), stderr=subprocess.STDOUT)
    wait_for_link(sim, link)
    # Contract keys and product defaults but the port, baud rate and a 1 s poll (the case's setting).
    sensor = {"name": "pump1", "port": str(link), "protocol": "modbus", "preset": "qm30vt2", "baudrate": 115200,
              "poll_interval": 1.0}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sensor], interval=2)
    config.write_text(config.read_text().replace("status_interval_s: 5.0", "status_interval_s: 1.0"))
    sub = Subscriber(broker.host, broker.port, ["#"])
    agent = pdm_agent("run", "--config", str(config))
    try:
        sub.wait_for(lambda ms: any(s.get("sensors", {}).get("pump1", {}).get("polls_ok", 0) > 0
                                    for s in _status(ms)), 20)
        for _ in range(3):  # three 4 s silences
            sim.send_signal(signal.SIGUSR1)
            time.sleep(4.0)
            sim.send_signal(signal.SIGUSR2)
            time.sleep(2.0)
        n = len(sub.snapshot())
        sub.wait_for(lambda ms: any(s.get("sensors", {}).get("pump1", {}).get("timeouts", 0) >= 3
                                    and s["sensors"]["pump1"]["health"]["state"] == "ok"
                                    for s in _status(ms[n:])), 15)
        offline = [json.loads(m.payload) for m in sub.snapshot() if m.topic.endswith("/alert")
                   and json.loads(m.payload).get("kind") == "sensor_offline"]
        assert offline == [], f"short gaps paged someone: {offline}"
    finally:
        code = stop(agent)
        stop(sim)
        sub.close()
    assert_clean_exit(agent, code)
