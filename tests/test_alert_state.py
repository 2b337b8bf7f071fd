"""An alarm raised before a restart is still cleared after it (levels persist per sensor)."""

from __future__ import annotations

import json
import sqlite3
import time

import structlog

from agent.service import Service

CONFIG = """
device: {id: gw}
mqtt: {host: 127.0.0.1, port: 1, reconnect_min_s: 5, reconnect_max_s: 5}
storage: {dir: STATE}
sensors:
  - {name: pump1, SOURCE, sample_rate: 3200, window: {size: 1024}}
"""


def alerts(state) -> list[dict]:
    db = sqlite3.connect(state / "outbox.sqlite")
    rows = [json.loads(p) for (p,) in db.execute("SELECT payload FROM messages WHERE kind = 'alert' ORDER BY id")]
    db.close()
    return rows


def run_for(path, seconds, until=None):
    service = Service(str(path), structlog.get_logger())
    service.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until()):
            time.sleep(0.2)
    finally:
        service.stop()


def test_offline_alarm_before_restart_is_cleared_after_it(tmp_path):
    state = tmp_path / "state"
    path = tmp_path / "config.yaml"
    base = CONFIG.replace("STATE", str(state))
    path.write_text(base.replace("SOURCE", f"protocol: lines, port: {tmp_path}/ttyNOPE"))
    # offline_after_s defaults to 10 s: the alarm comes once the port has been silent that long
    run_for(path, 30, until=lambda: (state / "outbox.sqlite").exists() and any(
        a["kind"] == "sensor_offline" for a in alerts(state)))
    assert [(a["kind"], a["level"]) for a in alerts(state)] == [("sensor_offline", "alarm")]

    path.write_text(base.replace("SOURCE", "protocol: sim"))  # the operator fixes the port, restarts
    run_for(path, 10, until=lambda: len(alerts(state)) > 1)
    assert [(a["kind"], a["level"]) for a in alerts(state)] == [("sensor_offline", "alarm"),
                                                                  ("sensor_offline", "clear")]
