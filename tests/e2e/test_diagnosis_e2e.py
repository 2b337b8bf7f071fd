"""The diagnosis reaches the subscriber: real Mosquitto, a real pty, real processes.

`pdm-agent simulate` streams a machine that develops an outer-race defect; `pdm-agent run`, given
the machine's speed and bearing (contract keys only: `machine: {rpm, bearings}`, every other
diagnosis setting at its default), must publish an anomaly alert whose `diagnosis` names the
outer race of that bearing, and keep it in the retained status.
"""

from __future__ import annotations

import json
import time

from agentproc import pdm_agent, start_simulator, stop, write_config
from broker import Subscriber

FAULT_AT = 50.0  # simulator seconds; the agent learns for 30 s of that
SKF6205 = {"name": "de", "bpfo": 3.585, "bpfi": 5.415, "bsf": 2.357, "ftf": 0.398}


def test_outer_race_fault_arrives_diagnosed(broker, tmp_path):
    link = tmp_path / "ttySIM0"
    sim_started = time.time()
    sim = start_simulator(link, fault="outer-race", fault_at=FAULT_AT, log=tmp_path / "sim.log")
    sensor = {"name": "pump1", "port": str(link), "protocol": "lines", "sample_rate": 3200,
              "detector": {"learn_seconds": 30}, "machine": {"rpm": 1780, "bearings": [SKF6205]}}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", sensors=[sensor])
    sub = Subscriber(broker.host, broker.port, ["#"])
    agent = pdm_agent("run", "--config", str(config))
    try:
        def anomaly_alerts(ms):
            return [json.loads(m.payload) for m in ms if m.topic == "pdm/e2e-gw/pump1/alert"
                    and json.loads(m.payload)["kind"] == "anomaly"]

        msgs = sub.wait_for(lambda ms: any(a["level"] in ("warning", "alarm") for a in anomaly_alerts(ms)),
                            FAULT_AT + 60 - (time.time() - sim_started))
        assert time.time() > sim_started + FAULT_AT, "alert raised while the machine was healthy"
        alert = next(a for a in anomaly_alerts(msgs) if a["level"] in ("warning", "alarm"))
        d = alert["diagnosis"]
        assert d["fault"] == "outer_race" and d["component"] == "de", d
        assert 0.5 <= d["confidence"] <= 1.0
        bpfo = 3.585 * 1780 / 60
        assert abs(d["evidence"]["lines"][0]["hz"] - bpfo) < 0.05 * bpfo, d["evidence"]
        print(f"\nfirst anomaly alert: {alert['level']}, diagnosis {d['fault']} on {d['component']} "
              f"({d['confidence']:.2f}), lines {[line['hz'] for line in d['evidence']['lines']]} Hz")

        # The retained status keeps the latest diagnosis of the sensor.
        def diagnosed_status(ms):
            docs = [json.loads(m.payload) for m in ms if m.topic == "pdm/e2e-gw/status"]
            return docs and (docs[-1].get("sensors", {}).get("pump1", {}).get("diagnosis") or {}).get("fault")

        status_msgs = sub.wait_for(diagnosed_status, 15)
        assert diagnosed_status(status_msgs) == "outer_race"
    finally:
        code = stop(agent)
        stop(sim)
        sub.close()
    out = agent.stdout.read().decode()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out
