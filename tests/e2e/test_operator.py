"""What an operator on the gateway sees: `pdm-agent status`, `pdm-agent watch`, aggregates on a
clock, and a log at info that a person can read. Real agent, real Mosquitto, real processes."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import datetime

from agentproc import log_events, pdm_agent, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Subscriber
from test_publisher_security import secure_broker


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = pdm_agent(*args, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_status_and_watch_follow_the_agent_and_fall_back_to_the_local_state(broker, tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=state, interval=2,
                          sensors=[sim_sensor("pump1", fault="outer-race", fault_at=14, learn_seconds=8)])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    watch = pdm_agent("watch", "--config", str(config), stderr=subprocess.PIPE)
    watch_json = pdm_agent("watch", "--config", str(config), "--json", "--aggregates", "--count", "3",
                           stderr=subprocess.PIPE)
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        alarm = json.loads(wait_until(lambda: next((m.payload for m in sub.snapshot() if m.topic.endswith("/alert")
                                                    and json.loads(m.payload)["level"] == "alarm"), None),
                                      90, what="an alarm").decode())
        wait_until(lambda: json.loads(next(m.payload for m in reversed(sub.snapshot())
                                           if m.topic.endswith("/status")))["sensors"]["pump1"]["condition"] == "alarm",
                   40, what="status refreshed after the alarm")

        # watch: one line per alert, saying what was measured against what; Ctrl-C ends it with 0.
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=20)
        assert watch.returncode == 0, err
        lines = out.decode().splitlines()
        first = next(line for line in lines if " ALARM " in line)
        assert first.startswith(f"{alarm['ts']} pump1 ALARM {alarm['kind']}: ")
        if alarm["kind"] == "anomaly":
            assert f"score {alarm['score']:.3g} >= 0.9; {alarm['reason'][0]['feature']}=" in first
        assert "watching pdm/e2e-gw/+/alert" in err.decode()
        # watch --json --aggregates --count 3: the payloads exactly as published.
        out, _ = watch_json.communicate(timeout=30)
        assert watch_json.returncode == 0
        docs = [json.loads(line) for line in out.decode().splitlines()]
        published = [json.loads(m.payload) for m in sub.snapshot() if m.topic.startswith("pdm/e2e-gw/pump1/")]
        assert len(docs) == 3 and all(d in published for d in docs)

        # status: from the broker, per sensor condition, per-kind levels, last alert; exit 0.
        run = _run("status", "--config", str(config))
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"pdm-agent e2e-gw: online (version " in run.stdout and f"from the broker at 127.0.0.1:{broker.port}" in run.stdout
        assert "pump1: ALARM  health ok  baseline ready" in run.stdout
        assert "alerts active: " in run.stdout and "anomaly alarm" in run.stdout
        assert "  last alert: " in run.stdout
        doc = json.loads(_run("status", "--config", str(config), "--json").stdout)
        pump = doc["sensors"]["pump1"]
        assert pump["condition"] == "alarm" == max(pump["levels"].values(), key=["clear", "warning", "alarm"].index)
        assert set(pump["levels"]) >= {"anomaly", "iso10816", "sensor_offline"}
        assert pump["last_alert"]["sensor"] == "pump1"

        # Broker down: the local copy answers, online while the agent runs.
        broker.stop()
        run = _run("status", "--config", str(config), "--timeout", "2")
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"from {state}/status.json" in run.stdout and "cannot reach the broker" in run.stdout
        assert "pump1: ALARM" in run.stdout
        broker.start()
        wait_until(lambda: _run("status", "--config", str(config)).stdout.find("from the broker") > 0, 40,
                   what="the agent back on the broker")
    finally:
        code = stop(agent)
        sub.close()
        for p in (watch, watch_json):
            if p.poll() is None:
                p.kill()
    assert code == 0
    events = [e.get("event") for e in log_events(tmp_path / "agent.log")]
    assert events.count("baseline learned") == 1 and "window" not in events
    run = _run("status", "--config", str(config))  # the retained offline status the agent left
    assert run.returncode == 1 and "pdm-agent e2e-gw: offline" in run.stdout and "from the broker" in run.stdout
    broker.stop()
    run = _run("status", "--config", str(config), "--timeout", "2")  # and its local copy
    assert run.returncode == 1 and "pdm-agent e2e-gw: offline" in run.stdout, run.stdout + run.stderr
    assert f"from {state}/status.json" in run.stdout


def test_status_and_watch_use_the_configs_tls_and_password(tmp_path):
    broker, ca_file = secure_broker(tmp_path)
    (tmp_path / "password").write_text("s3cret\n")
    tls = {"tls": {"ca_file": str(ca_file)}, "username": "gateway", "password_file": str(tmp_path / "password")}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", interval=1,
                          sensors=[sim_sensor("pump1", learn_seconds=2)])
    text = config.read_text().replace("mqtt:\n", "mqtt:\n" + "".join(
        f"  {k}: {json.dumps(v)}\n" for k, v in tls.items()))
    config.write_text(text)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text.replace(str(tmp_path / "password"), str(tmp_path / "wrong-password"))
                     .replace(str(tmp_path / "state"), str(tmp_path / "other-state")))
    (tmp_path / "wrong-password").write_text("nope\n")
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        run = wait_until(lambda: (r := _run("status", "--config", str(config))).returncode == 0 and r, 30,
                         what="status over TLS")
        assert "from the broker at localhost" in run.stdout and "pump1:" in run.stdout
        run = _run("watch", "--config", str(config), "--aggregates", "--count", "1")
        assert run.returncode == 0 and " pump1 aggregate 1 s: " in run.stdout, run.stdout + run.stderr
        run = _run("status", "--config", str(wrong), "--timeout", "3")
        assert run.returncode == 1 and "refused" in run.stderr, run.stdout + run.stderr
    finally:
        assert stop(agent) == 0
        broker.stop()


def test_aggregates_tick_on_the_clock_and_the_info_log_is_for_people(broker, tmp_path):
    """Product window (4096 samples at the default 1000 Hz: a window every 4.1 s) with 2 s
    aggregates: every interval is published, 2 s apart, empty ones with count 0."""
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", interval=2,
                          sensors=[{"name": "pump1", "protocol": "sim", "detector": {"learn_seconds": 8}}])
    check = _run("config", "check", "--config", str(config))
    assert check.returncode == 0 and "aggregates.interval: 2 s is shorter than sensor pump1's window hop" in check.stderr
    sub = Subscriber(broker.host, broker.port, ["pdm/e2e-gw/pump1/aggregate"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        msgs = sub.wait_for(lambda ms: len(ms) >= 8, 60)
    finally:
        assert stop(agent) == 0
        sub.close()
    aggs = [json.loads(m.payload) for m in msgs]
    ends = [_ts(a["ts"]) for a in aggs]
    assert all(a["interval_s"] == 2 for a in aggs)
    assert all(abs(b - a - 2.0) < 1e-6 for a, b in zip(ends, ends[1:])), ends  # consecutive, no gap
    assert all(e % 2 == 0 for e in ends)  # aligned: ts is the end of its interval
    empty = [a for a in aggs if a["count"] == 0]
    assert empty and all(a["features"] == {} for a in empty)
    assert sum(a["count"] for a in aggs) >= len(aggs) // 3 and all(a["count"] <= 1 for a in aggs)

    # At info: no per-window lines; one summary per aggregate; the learning milestones.
    events = log_events(log)
    names = [e.get("event") for e in events]
    assert "window" not in names
    summaries = [e for e in events if e.get("event") == "summary"]
    assert len(summaries) >= len(aggs) and {s["windows"] for s in summaries} <= {0, 1}
    assert any(e.get("event") == "config warning" and e["detail"].startswith("aggregates.interval: 2 s is shorter")
               for e in events)  # `run` says at start what `config check` warns about
    milestones = [e["progress"] for e in events if e.get("event") == "learning baseline"]
    assert milestones and milestones == sorted(set(milestones)) and set(milestones) <= {"25%", "50%", "75%"}
