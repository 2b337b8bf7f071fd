"""The baseline's life end to end: real Mosquitto, real ptys, real `pdm-agent` processes.

- contract keys only (1000 Hz, default 4096-sample windows, learn_seconds 20): a fault after
  learning is an MQTT alert within 60 s, and the status shows the 5-window baseline;
- a fault in the second half of a 120 s learning period is caught after learning (or suspect);
- kill -9 after learning, restart: the ready baseline and its learned_at survive; `baseline
  reset` makes the running agent learn anew, visible on the status topic within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time

from agentproc import (log_events, pdm_agent, sim_sensor, start_agent, start_simulator, stop, wait_until,
                       write_config)
from broker import Subscriber

STATUS = "pdm/e2e-gw/status"


def statuses(sub: Subscriber, live: bool = False) -> list[dict]:
    """Status documents received; `live`: only those published while subscribed (not retained)."""
    return [json.loads(m.payload) for m in sub.snapshot() if m.topic == STATUS and not (live and m.retain)]


def baseline(sub: Subscriber, sensor: str = "pump1", live: bool = False) -> dict:
    online = [s for s in statuses(sub, live) if s.get("state") == "online" and sensor in s.get("sensors", {})]
    return online[-1]["sensors"][sensor]["baseline"] if online else {}


def anomaly_alerts(sub: Subscriber) -> list[tuple[float, dict]]:
    return [(m.received, json.loads(m.payload)) for m in sub.snapshot()
            if m.topic.endswith("/pump1/alert") and json.loads(m.payload).get("kind") == "anomaly"]


def ts_of(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_contract_keys_learn_20s_at_1000hz_then_fault_alerts_within_60s(broker, tmp_path):
    link = tmp_path / "ttySIM0"
    fault_at = 45.0
    sim_started = time.time()
    sim = start_simulator(link, rate=1000, fault="outer-race", fault_at=fault_at, log=tmp_path / "sim.log")
    sensor = {"name": "pump1", "port": str(link), "protocol": "lines", "sample_rate": 1000,
              "channels": ["ax", "ay", "az", "temp"], "detector": {"learn_seconds": 20}}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", sensors=[sensor])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        learned = wait_until(lambda: (b := baseline(sub)).get("state") == "ready" and b, 60,
                             what="baseline ready on the status topic")
        assert learned["windows"] == 5 and learned["progress"] == 1.0 and learned["learned_at"]
        assert learned["reason"] is None and learned["calibration"]["method"] == "exponential-tail"
        assert ts_of(learned["learned_at"]) < sim_started + fault_at, "learning outlasted learn_seconds"
        wait_until(lambda: anomaly_alerts(sub), fault_at + 60 - (time.time() - sim_started),
                   what="an anomaly alert within 60 s of the fault")
        received, alert = anomaly_alerts(sub)[0]
        assert alert["level"] in ("warning", "alarm") and received > sim_started + fault_at
        print(f"\nlearn_seconds 20 at 1000 Hz: {learned['windows']} windows; fault -> alert at subscriber "
              f"{received - sim_started - fault_at:.1f} s; "
              f"learned_at -> alert {received - ts_of(learned['learned_at']):.1f} s")
        ends = [e for e in log_events(log) if e.get("event") == "baseline learned"]
        assert len(ends) == 1 and ends[0]["windows"] == 5 and ends[0]["sensor"] == "pump1"
    finally:
        code = stop(agent)
        stop(sim)
        sub.close()
    assert code == 0


def test_fault_in_second_half_of_120s_learning_is_caught(broker, tmp_path):
    sensor = {"name": "pump1", "protocol": "sim", "sample_rate": 1000, "channels": ["ax", "ay", "az", "temp"],
              "simulator": {"fault": "outer-race", "fault_at": 80.0, "seed": 2}, "detector": {"learn_seconds": 120}}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", sensors=[sensor])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(config, tmp_path / "agent.log")
    started = time.time()
    try:
        done = wait_until(lambda: (b := baseline(sub)).get("state") in ("ready", "suspect") and b, 180,
                          what="the end of learning on the status topic")
        print(f"\nfault at 80 s of a 120 s learning period: baseline {done['state']}, {done['windows']} windows, "
              f"reason: {done['reason']}")
        if done["state"] == "ready":  # the healthy part was kept: the fault must alert after learning
            assert "changed regime" in done["reason"] and done["windows"] < 80 / 4.096
            wait_until(lambda: anomaly_alerts(sub), 60, what="an anomaly alert after learning")
            received, alert = anomaly_alerts(sub)[0]
            assert received >= ts_of(done["learned_at"]) - 1
            print(f"fault -> alert at subscriber {received - started - 80:.1f} s (agent start ~ simulator start)")
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0


def test_restart_keeps_baseline_and_reset_learns_anew(broker, tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=state, interval=1,
                          sensors=[sim_sensor("pump1", learn_seconds=3)])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        first = wait_until(lambda: (b := baseline(sub)).get("state") == "ready" and b, 40, what="baseline ready")
        sock = state / "control.sock"
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    finally:
        agent.send_signal(signal.SIGKILL)  # learning just ended: no checkpoint interval to wait for
        agent.wait(10)
    sub.close()
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log2 = tmp_path / "agent2.log"
    agent = start_agent(config, log2)
    try:
        wait_until(lambda: any(e.get("event") == "learned baseline restored" for e in log_events(log2)), 30,
                   what="baseline restored after kill -9")
        again = wait_until(lambda: (b := baseline(sub, live=True)).get("state") == "ready" and b, 30,
                           what="status from the restarted agent")
        assert again["learned_at"] == first["learned_at"] and again["windows"] == first["windows"]

        asked = time.time()
        reset = pdm_agent("baseline", "reset", "--config", str(config), "--sensor", "pump1")
        out, _ = reset.communicate(timeout=30)
        assert reset.returncode == 0, out
        relearn = wait_until(lambda: (b := baseline(sub)).get("state") == "learning" and b, 10,
                             what="status shows learning after the reset")
        assert relearn["learned_at"] is None and relearn["progress"] < 1.0
        print(f"\n`pdm-agent baseline reset` started -> status `learning` at the subscriber within "
              f"{time.time() - asked:.1f} s (the command itself is a Python start-up)")
        second = wait_until(lambda: (b := baseline(sub)).get("state") == "ready" and b, 40, what="ready again")
        assert ts_of(second["learned_at"]) > ts_of(first["learned_at"])

        unknown = pdm_agent("baseline", "reset", "--config", str(config), "--sensor", "nope")
        assert unknown.wait(30) == 2
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0
    gone = pdm_agent("baseline", "reset", "--config", str(config))
    out, _ = gone.communicate(timeout=30)
    assert gone.returncode == 1 and b"no running agent" in out
