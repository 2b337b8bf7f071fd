"""From a serial sensor to an MQTT alert: real Mosquitto, a real pty, real processes.

`pdm-agent simulate` streams a healthy machine that develops an outer-race bearing fault;
`pdm-agent run` reads it over the pty, learns the baseline, and must publish its retained
status, aggregates, no alert while the machine is healthy, and an alert after the fault.
"""

from __future__ import annotations

import json
import re
import time

from agentproc import lines_sensor, pdm_agent, start_simulator, stop, write_config
from broker import Subscriber

FAULT_AT = 45.0  # simulator seconds; the agent learns for 20 s of that


def test_fault_on_serial_line_becomes_mqtt_alert(broker, tmp_path):
    link = tmp_path / "ttySIM0"
    sim_started = time.time()
    sim = start_simulator(link, fault="outer-race", fault_at=FAULT_AT, log=tmp_path / "sim.log")
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[lines_sensor("pump1", link, learn_seconds=20)])
    sub = Subscriber(broker.host, broker.port, ["#"])
    agent = pdm_agent("run", "--config", str(config))
    try:
        sub.wait_for(lambda ms: any(m.topic == "pdm/e2e-gw/status" for m in ms), 20)
        # A subscriber arriving later gets the status as a retained message.
        late = Subscriber(broker.host, broker.port, ["pdm/e2e-gw/status"])
        retained = late.wait_for(lambda ms: any(m.retain for m in ms), 5)
        late.close()
        status = json.loads(retained[0].payload)
        assert status["state"] == "online" and status["version"] and status["ts"]

        sub.wait_for(lambda ms: any(m.topic == "pdm/e2e-gw/pump1/aggregate" for m in ms), 20)
        msgs = sub.wait_for(lambda ms: any(m.topic == "pdm/e2e-gw/pump1/alert" for m in ms),
                            FAULT_AT + 40 - (time.time() - sim_started))
        first_alert_seen = time.time()
        alerts = [json.loads(m.payload) for m in msgs if m.topic.endswith("/alert")]
        alert = alerts[0]
        fault_wall = sim_started + FAULT_AT
        assert alert["level"] in ("warning", "alarm")
        assert first_alert_seen > fault_wall, "alert raised while the machine was healthy"
        assert set(alert) >= {"id", "ts", "device", "sensor", "level", "score", "threshold", "model", "reason"}
        assert alert["device"] == "e2e-gw" and alert["sensor"] == "pump1"
        assert 0 <= alert["score"] <= 1 and alert["reason"]
        print(f"\nfault onset -> first alert at subscriber: {first_alert_seen - fault_wall:.1f} s "
              f"(level {alert['level']}, reason {alert['reason'][0]['feature']})")

        aggregate = next(json.loads(m.payload) for m in msgs if m.topic.endswith("/aggregate"))
        assert aggregate["count"] > 0 and aggregate["interval_s"] == 5
        assert {"mean", "min", "max"} <= set(aggregate["features"]["ax.rms_g"])

        # Only the contract topics; raw samples never leave the device.
        contract = re.compile(r"^pdm/e2e-gw/(status|pump1/(alert|aggregate))$")
        assert all(contract.match(m.topic) for m in sub.snapshot()), {m.topic for m in sub.snapshot()}
    finally:
        code = stop(agent)
        stop(sim)
    out = agent.stdout.read().decode()
    assert code == 0, out[-3000:]
    final = sub.wait_for(lambda ms: json.loads([m for m in ms if m.topic.endswith("/status")][-1].payload)
                         ["state"] == "offline", 10)
    assert json.loads([m for m in final if m.topic.endswith("/status")][-1].payload)["state"] == "offline"
    sub.close()
    assert "Traceback" not in out
