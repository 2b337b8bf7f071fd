"""Storage faults with the real agent: it keeps monitoring and delivering, and says why.

Read-only state directory: a tmpfs mounted read-only (an SD card remounted ro after I/O
errors); where the test cannot mount (not root), a state dir under a regular file instead,
which nobody can create. Full disk: a small tmpfs filled by a ballast file while the agent runs.
"""

from __future__ import annotations

import json
import os
import random

from agentproc import log_events, raised_alerts, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Subscriber
from mounts import tmpfs


def _statuses(sub: Subscriber) -> list[dict]:
    return [json.loads(m.payload) for m in sub.snapshot()
            if m.topic.endswith("/status") and json.loads(m.payload).get("state") == "online"]


def _delivered(sub: Subscriber) -> set[str]:
    return {json.loads(m.payload)["id"] for m in sub.snapshot() if m.topic.endswith("/alert")}


def _no_traceback(log) -> None:
    text = log.read_text()
    assert "Traceback" not in text and "agent failed" not in text, text[-3000:]


def test_read_only_state_dir_runs_degraded_and_delivers_alerts(broker, tmp_path):
    state = tmp_path / "state"
    with tmpfs(state, "1m", read_only=True) as mounted:
        if not mounted:
            (tmp_path / "a-file").write_text("x")
            state = tmp_path / "a-file" / "state"
        log = tmp_path / "agent.log"
        cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=state, interval=2,
                           sensors=[sim_sensor("pump1", fault="imbalance", fault_at=10, learn_seconds=6)])
        sub = Subscriber(broker.host, broker.port, ["pdm/#"])
        agent = start_agent(cfg, log)
        try:
            wait_until(lambda: len(raised_alerts(log)) >= 1, 90, what="an alert raised")
            wait_until(lambda: raised_alerts(log)[0] in _delivered(sub), 30, what="the alert delivered")
            wait_until(lambda: _statuses(sub), 20, what="a status")
            storage = _statuses(sub)[-1]["storage"]
            assert storage["state"] == "degraded"
            assert storage["reason"].startswith("storage unusable")
            assert ("read-only" in storage["reason"]) if mounted else ("storage.dir" in storage["reason"])
            assert agent.poll() is None
        finally:
            code = stop(agent)
            sub.close()
    assert code == 0
    _no_traceback(log)
    errors = [e for e in log_events(log) if e.get("level") == "error" and "storage unusable" in e.get("event", "")]
    assert len(errors) == 1 and errors[0]["path"].endswith("outbox.sqlite")


def test_damaged_outbox_is_moved_aside_and_the_agent_delivers(broker, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite").write_bytes(random.Random(2).randbytes(8192))
    log = tmp_path / "agent.log"
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=state, interval=1,
                       sensors=[sim_sensor("pump1")])
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, log)
    try:
        sub.wait_for(lambda ms: sum(m.topic.endswith("/aggregate") for m in ms) >= 2, 40)
        assert _statuses(sub)[-1]["storage"]["state"] == "ok"
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0
    _no_traceback(log)
    (err,) = [e for e in log_events(log) if str(e.get("event", "")).startswith("outbox file damaged")]
    assert os.path.exists(err["moved_to"]) and err["path"] == str(state / "outbox.sqlite")


def test_full_disk_while_connected_sends_alerts_at_once(broker, tmp_path):
    state = tmp_path / "state"
    with tmpfs(state, "2m") as mounted:
        assert mounted, "needs root to mount a small tmpfs (a full disk cannot be faked)"
        log = tmp_path / "agent.log"
        cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=state, interval=1,
                           sensors=[sim_sensor("pump1", fault="imbalance", fault_at=14, learn_seconds=6)])
        sub = Subscriber(broker.host, broker.port, ["pdm/#"])
        agent = start_agent(cfg, log)
        try:
            sub.wait_for(lambda ms: any(m.topic.endswith("/aggregate") for m in ms), 30)
            ballast = open(state / "ballast", "wb", buffering=0)
            try:
                while True:
                    ballast.write(b"\0" * 4096)
            except OSError:
                pass
            wait_until(lambda: len(raised_alerts(log)) >= 1, 90, what="an alert raised while the disk is full")
            wait_until(lambda: raised_alerts(log)[0] in _delivered(sub), 30, what="the alert delivered")
            wait_until(lambda: any(s["storage"]["state"] == "degraded" for s in _statuses(sub)), 30,
                       what="a status saying the storage is degraded")
            degraded = [s for s in _statuses(sub) if s["storage"]["state"] == "degraded"][-1]
            assert "disk full" in degraded["storage"]["reason"]
            ballast.close()
            os.unlink(state / "ballast")
            n = len(_statuses(sub))
            wait_until(lambda: len(_statuses(sub)) > n and _statuses(sub)[-1]["storage"]["state"] == "ok", 30,
                       what="storage ok again once space is free")
        finally:
            code = stop(agent)
            sub.close()
    assert code == 0
    _no_traceback(log)
    text = log.read_text()
    assert "no transaction is active" not in text
