"""An alert is never lost because of the diagnosis riding on it: with `mqtt.max_packet_bytes`
(the broker's limit) too small for an alert with its evidence, the real agent sends the alert
without the evidence (or without the diagnosis) and says so in its log, instead of setting the
alert aside. Real Mosquitto, real `pdm-agent run`, the simulator's inner-race fault."""

from __future__ import annotations

import json

import yaml

from tests.agentproc import log_events, sim_sensor, start_agent, stop, wait_until, write_config
from tests.broker import Subscriber

SKF6205 = {"name": "de", "bpfo": 3.585, "bpfi": 5.415, "bsf": 2.357, "ftf": 0.398}
LIMIT = 700  # an anomaly alert is ~450 bytes; with a diagnosis and its evidence 900-1200


def test_an_alert_too_large_with_its_diagnosis_goes_out_without_the_evidence(broker, tmp_path):
    sensor = {**sim_sensor("pump1", fault="inner-race", fault_at=14.0, learn_seconds=8),
              "machine": {"rpm": 1780, "bearings": [SKF6205]}}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", sensors=[sensor])
    cfg = yaml.safe_load(config.read_text())
    cfg["mqtt"]["max_packet_bytes"] = LIMIT
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    sub = Subscriber(broker.host, broker.port, ["pdm/e2e-gw/pump1/alert"])
    log = tmp_path / "agent.log"
    proc = start_agent(config, log)
    try:
        def anomaly_alerts():
            out = [json.loads(m.payload) for m in sub.snapshot()]
            return [a for a in out if a["kind"] == "anomaly" and a["level"] in ("warning", "alarm")]

        alerts = wait_until(anomaly_alerts, timeout=90, what="an anomaly alert at the subscriber")
    finally:
        stop(proc)
        sub.close()
    a = alerts[0]
    assert len(json.dumps(a, separators=(",", ":"))) < LIMIT
    assert "diagnosis" not in a or a["diagnosis"]["evidence"] == {}
    if "diagnosis" in a:
        assert a["diagnosis"]["fault"] in ("inner_race", "unknown")
    said = [e for e in log_events(log) if "over mqtt.max_packet_bytes with its diagnosis" in str(e.get("event"))]
    assert said and said[0]["id"] == a["id"]
    assert not [e for e in log_events(log) if "set aside" in str(e.get("event")) and e.get("kind") == "alert"]
