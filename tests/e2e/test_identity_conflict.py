"""Identity conflict: two real agents configured with one device.id (a copied SD-card image) on a real
Mosquitto. They must stop fighting over the client id (the broker's own log counts the takeovers),
say why once in the log and in the status, and lose no alert: once one of them is stopped, the
other delivers everything it queued meanwhile, in order.
"""

from __future__ import annotations

import json
import re
import time

from agentproc import log_events, raised_alerts, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Subscriber

FLAPPY = dict(debounce_n=1, debounce_m=1, hysteresis=0.0)  # every crossing is an event: many alerts
TAKEOVER = re.compile(r"Client pdm-agent-gw-same already connected, closing old connection")


def takeovers(broker) -> int:
    """Client-id takeovers, as the broker logged them (Mosquitto 2: `log_type notice`)."""
    return len(TAKEOVER.findall(broker.live_log.read_text(errors="replace")))


def conflict_reports(log) -> list[dict]:
    return [e for e in log_events(log) if str(e.get("event", "")).startswith("identity conflict:")]


def test_two_agents_with_one_device_id_stop_fighting_say_why_and_lose_nothing(broker, tmp_path):
    sensors = {"a": sim_sensor("pump_a", fault="outer-race", fault_at=14, **FLAPPY), "b": sim_sensor("pump_b")}
    logs, agents = {}, {}
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    try:
        for x, sensor in sensors.items():
            cfg = write_config(tmp_path / f"{x}.yaml", broker=broker, storage=tmp_path / f"state_{x}", interval=2,
                               device="gw-same", sensors=[sensor])
            cfg.write_text(cfg.read_text().replace("reconnect_max_s: 2.0", "reconnect_max_s: 1.0"))
            logs[x] = tmp_path / f"{x}.log"
            agents[x] = start_agent(cfg, logs[x])
        wait_until(lambda: all(conflict_reports(log) for log in logs.values()), 60,
                   what="both agents reporting the identity conflict")
        fighting = takeovers(broker)
        assert fighting >= 3  # the broker did see them take the id from each other

        # Back-off from reconnect_max_s (1 s) doubling to 8 s (+-20 %): after ~10 s of settling,
        # takeovers come at most every 6.4 s. Without it they come every reconnect_min_s (0.5 s).
        time.sleep(10)
        before = takeovers(broker)
        time.sleep(20)
        in_window = takeovers(broker) - before
        assert in_window <= 5, f"{in_window} takeovers in 20 s: still fighting"

        def conflict_status():
            docs = [json.loads(m.payload) for m in sub.snapshot() if m.topic == "pdm/gw-same/status"]
            return [d for d in docs if "identity_conflict" in d]

        doc = wait_until(conflict_status, 30, what="the status saying so")[-1]
        assert doc["identity_conflict"]["device_id"] == "gw-same"
        assert "own device.id" in doc["identity_conflict"]["fix"] and "clash suspected" in doc["mqtt_warning"]

        def local_status() -> dict:  # storage.dir/status.json, what `pdm-agent status` reads offline
            try:
                return json.loads((tmp_path / "state_a" / "status.json").read_text()).get("identity_conflict")
            except (OSError, ValueError):
                return None

        assert wait_until(local_status, 30, what="the local status file saying so")["device_id"] == "gw-same"
        wait_until(lambda: raised_alerts(logs["a"]), 30, what="alerts raised during the conflict")
        assert stop(agents.pop("b")) == 0  # the operator removes the copy
        raised = raised_alerts(logs["a"])

        def delivered() -> list[str]:
            seen, out = set(), []
            for m in sub.snapshot():
                if m.topic == "pdm/gw-same/pump_a/alert" and (i := json.loads(m.payload)["id"]) not in seen:
                    seen.add(i)
                    out.append(i)
            return out

        wait_until(lambda: set(raised) <= set(delivered()), 40, what="every queued alert delivered")
        got = delivered()
        assert [i for i in got if i in set(raised)] == raised  # first deliveries in raised order
    finally:
        codes = [stop(a) for a in agents.values()]
        sub.close()
    assert codes == [0]
    for log in logs.values():
        (report,) = conflict_reports(log)  # said once, as an error naming the device id and the fix
        assert report["level"] == "error"
        assert report["device_id"] == "gw-same" and report["client_id"] == "pdm-agent-gw-same"
        assert "own device.id" in report["fix"] and report["reconnect_s"] >= 1.0
        assert "Unspecified error" not in log.read_text()


def test_one_device_id_under_two_client_ids_is_said_once_and_a_restart_is_not_taken_for_it(broker, tmp_path):
    """Same device.id, one agent with its own mqtt.client_id: the broker closes neither, but both
    publish as gw-same. Each must say so once (log and status); an agent restarted alone (its own
    retained status from before) must not."""
    import yaml

    def shared_reports(log) -> list[dict]:
        return [e for e in log_events(log) if str(e.get("event", "")).startswith("device.id shared:")]

    sub = Subscriber(broker.host, broker.port, ["pdm/gw-same/status"])
    logs, agents = {x: tmp_path / f"{x}.log" for x in "ab"}, {}
    try:
        for x in "ab":
            cfg = write_config(tmp_path / f"{x}.yaml", broker=broker, storage=tmp_path / f"state_{x}", interval=2,
                               device="gw-same", sensors=[sim_sensor(f"pump_{x}")])
            if x == "b":
                doc = yaml.safe_load(cfg.read_text())
                doc["mqtt"]["client_id"] = "gw-b-own-client"
                cfg.write_text(yaml.safe_dump(doc))
            if x == "a":  # a restart alone: its retained status from the run before is not another agent
                first = start_agent(cfg, tmp_path / "a0.log")
                wait_until(lambda: any(m.payload.startswith(b'{"state":"online"') for m in sub.snapshot()), 30,
                           what="a's first run online")
                assert stop(first) == 0
                agents[x] = start_agent(cfg, logs[x])
                wait_until(lambda: len([m for m in sub.snapshot() if not m.retain]) >= 4, 30, what="a's statuses")
                assert shared_reports(tmp_path / "a0.log") == shared_reports(logs["a"]) == []
            else:
                agents[x] = start_agent(cfg, logs[x])
        wait_until(lambda: all(shared_reports(log) for log in logs.values()), 40, what="both saying device.id shared")

        def warned() -> list[dict]:
            docs = [json.loads(m.payload) for m in sub.snapshot()]
            return [d for d in docs if "device_id_shared" in d]

        doc = wait_until(warned, 20, what="the status saying so")[-1]
        assert doc["device_id_shared"]["device_id"] == "gw-same" and "shared" in doc["mqtt_warning"]
        time.sleep(12)  # more statuses of each other: still said only once
    finally:
        codes = [stop(a) for a in agents.values()]
        sub.close()
    assert codes == [0, 0]
    assert shared_reports(logs["a"])[0]["other_client_id"] == "gw-b-own-client"
    assert shared_reports(logs["b"])[0]["other_client_id"] == "pdm-agent-gw-same"
    assert [len(shared_reports(log)) for log in logs.values()] == [1, 1]


def test_a_flapping_broker_is_not_taken_for_an_identity_conflict(broker, tmp_path):
    """The broker restarted four times, up ~3 s each: every connection closes within 5 s of its
    CONNACK with nothing in flight, like a takeover, but the attempts in between fail (the broker is
    away), which a taken-over client never sees. No identity conflict may be reported."""
    cfg = write_config(tmp_path / "a.yaml", broker=broker, storage=tmp_path / "st", interval=2, device="gw-1",
                       sensors=[sim_sensor("pump1")])
    log = tmp_path / "a.log"
    agent = start_agent(cfg, log)
    try:
        wait_until(lambda: any(e.get("event") == "broker connected" for e in log_events(log)), 30, what="connected")
        for _ in range(4):
            broker.stop()
            time.sleep(1.5)
            broker.start()
            time.sleep(3)
        closes = [e for e in log_events(log) if str(e.get("event", "")).startswith("broker unreachable")]
        assert len(closes) >= 3  # the restarts were seen as closes
    finally:
        assert stop(agent) == 0
    assert conflict_reports(log) == []
    assert "identity conflict" not in log.read_text()
