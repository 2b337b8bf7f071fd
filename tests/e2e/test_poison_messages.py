"""Poison messages: a row the broker will not take never blocks the rows behind it.

A real Mosquitto with a small `max_packet_size` closes the connection on every PUBLISH larger
than it (MQTT 3.1.1 gives the client no reason). A simulated sensor's aggregate (4 channels x
~10 features x mean/min/max, ~2 kB) is larger; its alerts (~0.4 kB) and the status fit.
"""

from __future__ import annotations

import json

from agentproc import log_events, raised_alerts, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Broker, Subscriber

LIMIT = 1800  # bytes: the status (~1.2 kB) and alerts fit, aggregates do not


def _refused_reports(log) -> list[dict]:
    return [e for e in log_events(log) if str(e.get("event", "")).startswith("broker refused a message")]


def _last_status(sub: Subscriber) -> dict:
    return [json.loads(m.payload) for m in sub.snapshot() if m.topic.endswith("/status")][-1]


def test_oversized_aggregate_is_set_aside_and_the_alarm_behind_it_delivered(tmp_path):
    """Product defaults (no mqtt.max_packet_bytes): the agent finds the refused row by itself."""
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", listener=["allow_anonymous true", f"max_packet_size {LIMIT}"])
    broker.start()
    log = tmp_path / "agent.log"
    sensors = [sim_sensor("pump1", fault="imbalance", fault_at=12, learn_seconds=6)]
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=2, sensors=sensors)
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, log)
    try:
        wait_until(lambda: len(raised_alerts(log)) >= 1, 90, what="an alert raised by the agent")
        raised = raised_alerts(log)[0]
        got = lambda: {json.loads(m.payload)["id"] for m in sub.snapshot() if m.topic.endswith("/alert")}  # noqa: E731
        wait_until(lambda: raised in got(), 60, what="the alert delivered past the refused aggregates")
        wait_until(lambda: _last_status(sub)["outbox"]["rejected"]["aggregate"] >= 2, 30,
                   what="refused aggregates counted in the status")
        status = _last_status(sub)
        assert status["outbox"]["dropped"]["aggregate"] >= status["outbox"]["rejected"]["aggregate"]
        assert status["outbox"]["rejected"]["alert"] == 0
        assert not any(m.topic.endswith("/aggregate") for m in sub.snapshot())  # none fits this broker
    finally:
        code = stop(agent)
        sub.close()
        broker.stop()
    assert code == 0
    reports = _refused_reports(log)
    assert len(reports) == 1, reports  # reported once (per topic), however many are set aside
    assert reports[0]["topic"] == "pdm/e2e-gw/pump1/aggregate"
    assert reports[0]["size_bytes"] > LIMIT
    assert "closed the connection" in reports[0]["reason"]
    assert "Unspecified error" not in log.read_text()
    # Learned from the first refusal: later aggregates are set aside without a reconnect each.
    connects = [e for e in log_events(log) if e.get("event") == "broker connected"]
    assert len(connects) <= 8, len(connects)


def test_configured_packet_limit_sets_rows_aside_without_a_reconnect(tmp_path):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", listener=["allow_anonymous true", f"max_packet_size {LIMIT}"])
    broker.start()
    log = tmp_path / "agent.log"
    sensors = [sim_sensor("pump1", fault="imbalance", fault_at=10, learn_seconds=6)]
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=2, sensors=sensors)
    text = cfg.read_text().replace("status_interval_s: 5.0", f"status_interval_s: 5.0\n  max_packet_bytes: {LIMIT}")
    assert text != cfg.read_text()
    cfg.write_text(text)
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, log)
    try:
        wait_until(lambda: len(raised_alerts(log)) >= 1, 90, what="an alert raised by the agent")
        raised = raised_alerts(log)[0]
        got = lambda: {json.loads(m.payload)["id"] for m in sub.snapshot() if m.topic.endswith("/alert")}  # noqa: E731
        wait_until(lambda: raised in got(), 30, what="the alert delivered")
    finally:
        code = stop(agent)
        sub.close()
        broker.stop()
    assert code == 0
    events = log_events(log)
    assert sum(e.get("event") == "broker connected" for e in events) == 1  # never knocked off
    assert not any(str(e.get("event", "")).startswith("broker unreachable") for e in events)
    (report,) = _refused_reports(log)
    assert report["limit_bytes"] == LIMIT and report["size_bytes"] > LIMIT
    assert report["reason"] == "larger than mqtt.max_packet_bytes"


def test_trimmed_aggregates_fit_a_small_broker(tmp_path):
    """`aggregates.features` keeps rows small: the same sensor's aggregates now fit and arrive."""
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", listener=["allow_anonymous true", f"max_packet_size {LIMIT}"])
    broker.start()
    log = tmp_path / "agent.log"
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=2,
                       sensors=[sim_sensor("pump1")])
    text = cfg.read_text().replace("aggregates:\n  interval: 2\n",
                                   "aggregates:\n  interval: 2\n  features: ['*.rms_g', 'temp.*']\n")
    assert text != cfg.read_text()
    cfg.write_text(text)
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, log)
    try:
        msgs = sub.wait_for(lambda ms: sum(m.topic.endswith("/aggregate") for m in ms) >= 2, 40)
        agg = json.loads([m for m in msgs if m.topic.endswith("/aggregate")][-1].payload)
        assert "ax.rms_g" in agg["features"] and "score" in agg["features"]
        assert not any(k.endswith(".kurtosis") for k in agg["features"])
    finally:
        code = stop(agent)
        sub.close()
        broker.stop()
    assert code == 0
    assert not _refused_reports(log)
