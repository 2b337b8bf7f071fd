"""The fleet view and shared subscriptions, end to end with real Mosquitto and real processes.

- `pdm-agent watch --fleet` over two real agents (distinct device ids; one goes faulty, one is
  still learning): the device table, their alerts as they come, a device going offline.
- Two `pdm-agent watch --fleet --share oncall --json` consumers in one MQTT 5 share group split
  N alerts: each alert reaches exactly one of them, none is lost, both get a share.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from agentproc import pdm_agent, sim_sensor, start_agent, stop, wait_until
from broker import Subscriber

N_ALERTS = 200


def _config(tmp_path, broker, device: str, sensor: dict) -> object:
    cfg = {"device": {"id": device},
           "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "plant", "status_interval_s": 2.0},
           "storage": {"dir": str(tmp_path / f"state-{device}")},
           "sensors": [sensor], "logging": {"format": "json"}}
    path = tmp_path / f"{device}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _watch(config, out, err, *extra):
    return pdm_agent("watch", "--fleet", "--config", str(config), *extra, stdout=open(out, "wb"),
                     stderr=open(err, "wb"))


def _rows(lines):
    """The first line printed for each device (its row in the table)."""
    rows = {}
    for ln in lines[1:]:
        tokens = ln.split()
        if len(tokens) >= 6 and tokens[0] in ("press-01", "press-02"):
            rows.setdefault(tokens[0], tokens)
    return rows


def _lines(path):
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def test_fleet_view_lists_devices_and_follows_their_alerts(broker, tmp_path):
    # The fault comes late enough (simulated time from the agent's start) for the watcher, started once
    # both agents are online, to be subscribed before the first alert even on a loaded machine.
    faulty = _config(tmp_path, broker, "press-01", sim_sensor("pump1", fault="outer-race", fault_at=30.0,
                                                                learn_seconds=5))
    learning = _config(tmp_path, broker, "press-02", sim_sensor("fan1", learn_seconds=3600))
    sub = Subscriber(broker.host, broker.port, ["plant/+/status"])
    agents = [start_agent(faulty, tmp_path / "a.log"), start_agent(learning, tmp_path / "b.log")]
    out, err = tmp_path / "fleet.out", tmp_path / "fleet.err"
    watcher = None
    try:
        # Both retained statuses name their sensor (the first one, at connect, may come before the sensor starts).
        sub.wait_for(lambda ms: {m.topic for m in ms if json.loads(m.payload).get("state") == "online"
                                 and json.loads(m.payload).get("sensors")}
                     == {"plant/press-01/status", "plant/press-02/status"}, 20)
        watcher = _watch(learning, out, err)  # any config naming the broker and prefix will do
        wait_until(lambda: len(_rows(_lines(out))) == 2, 15, what="the device table")
        table = _lines(out)
        assert table[0].split()[:5] == ["DEVICE", "STATE", "WORST", "SENSORS", "LEARNING"]
        rows = _rows(table)
        assert rows["press-01"][1] == "online" and rows["press-02"][1] == "online"
        assert rows["press-02"][2] == "clear" and rows["press-02"][4] == "fan1"  # learning for an hour
        # The fault: its alert line, then press-01's line with the level it raised.
        wait_until(lambda: any(ln.startswith("press-01: ") and "pump1" in ln for ln in _lines(out)), 60,
                   what="press-01's alert")
        wait_until(lambda: any(ln.split()[:3] in (["press-01", "online", "WARNING"], ["press-01", "online", "ALARM"])
                               for ln in _lines(out)), 15, what="press-01's worst level")
        assert stop(agents[1]) == 0
        wait_until(lambda: any(ln.split()[:2] == ["press-02", "offline"] for ln in _lines(out)), 15,
                   what="press-02 offline")
    finally:
        for a in agents:
            stop(a)
        if watcher is not None:
            code = stop(watcher, signal.SIGINT)
        sub.close()
    assert code == 0 and "Traceback" not in err.read_text()


def _alert(i: int) -> tuple[str, bytes]:
    device, sensor = f"press-{i % 3:02d}", f"pump{i % 2}"
    body = {"id": f"alert-{i:04d}", "ts": "2026-11-30T18:00:00.000Z", "device": device, "sensor": sensor,
            "level": "warning", "kind": "anomaly", "score": 0.9, "threshold": 0.8, "model": "gaussian@1",
            "reason": []}
    return f"plant/{device}/{sensor}/alert", json.dumps(body).encode()


def _ids(path):
    ids = []
    for ln in _lines(path):
        doc = json.loads(ln)
        if "alert" in doc:
            ids.append(doc["alert"]["id"])
    return ids


def test_two_consumers_in_a_share_group_get_each_alert_exactly_once(broker, tmp_path):
    config = _config(tmp_path, broker, "desk", sim_sensor("unused"))
    consumers = []
    for n in (1, 2):
        out, err = tmp_path / f"c{n}.out", tmp_path / f"c{n}.err"
        consumers.append((_watch(config, out, err, "--share", "oncall", "--json"), out, err))
    try:
        for proc, _, err in consumers:
            wait_until(lambda err=err: "following $share/oncall/plant/+/+/alert" in err.read_text(), 15,
                       what="consumer subscribed")
        time.sleep(SETTLE := 1.5)  # past the consumers' table (retained statuses) phase
        pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        infos = [pub.publish(*_alert(i), qos=1) for i in range(N_ALERTS)]
        for info in infos:
            info.wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()
        wait_until(lambda: len(_ids(consumers[0][1])) + len(_ids(consumers[1][1])) >= N_ALERTS, 20,
                   what=f"{N_ALERTS} alerts across the group")
        time.sleep(SETTLE)  # a duplicate would arrive now
    finally:
        codes = [stop(proc, signal.SIGINT) for proc, _, _ in consumers]
    first, second = _ids(consumers[0][1]), _ids(consumers[1][1])
    assert codes == [0, 0]
    assert sorted(first + second) == [f"alert-{i:04d}" for i in range(N_ALERTS)]  # none lost, none doubled
    assert first and second, (len(first), len(second))  # the group really split the stream
    assert first == sorted(first) and second == sorted(second)  # each consumer sees its share in order


def _example(broker, group, cid, out):
    example = Path(__file__).resolve().parent.parent.parent / "docs" / "examples" / "alert_consumer.py"
    return subprocess.Popen([sys.executable, str(example), "--host", broker.host, "--port", str(broker.port),
                             "--prefix", "plant", "--group", group, "--id", cid],
                            stdout=open(out, "ab"), stderr=subprocess.STDOUT)


def _publish_alerts(broker, numbers):
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for info in [pub.publish(*_alert(i), qos=1) for i in numbers]:
        info.wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()


def _example_ids(path):
    return [json.loads(ln)["id"] for ln in _lines(path) if ln.startswith("{")]


def test_the_documented_consumer_keeps_its_share_across_its_restart(broker, tmp_path):
    """docs/examples/alert_consumer.py x2 (persistent sessions): one is restarted while alerts flow;
    the broker keeps its share for it, so across both every alert arrives exactly once."""
    outs = [tmp_path / "e1.out", tmp_path / "e2.out"]
    procs = [_example(broker, "oncall", f"oncall-{n}", out) for n, out in enumerate(outs, 1)]
    try:
        time.sleep(1.5)  # both subscribed (their share group must exist before the first alert)
        _publish_alerts(broker, range(0, N_ALERTS // 2))
        wait_until(lambda: sum(len(_example_ids(o)) for o in outs) >= N_ALERTS // 2, 20, what="first half")
        assert stop(procs[1], signal.SIGINT) == 0  # oncall-2 goes away (an update, a restart)
        _publish_alerts(broker, range(N_ALERTS // 2, N_ALERTS))
        time.sleep(1.0)
        assert sum(len(_example_ids(o)) for o in outs) < N_ALERTS  # its share waits on the broker
        procs[1] = _example(broker, "oncall", "oncall-2", outs[1])
        wait_until(lambda: sum(len(_example_ids(o)) for o in outs) >= N_ALERTS, 20, what="all alerts")
        time.sleep(1.0)
    finally:
        for p in procs:
            stop(p, signal.SIGINT)
    first, second = _example_ids(outs[0]), _example_ids(outs[1])
    assert sorted(first + second) == [f"alert-{i:04d}" for i in range(N_ALERTS)]
    assert first and second
