"""Identity conflicts (agent/identity.py): two agents with one client id are recognised from
short connections, back off exponentially up to a cap, and recover once a connection holds."""

from __future__ import annotations

import random

import pytest

from agent.identity import BACKOFF_GROWTH, CONFLICT_CLOSES, SHORT_S, IdentityConflict, TakeoverGuard


def conflict(max_s: float = 60, jitter: float = 0.0) -> IdentityConflict:
    return IdentityConflict("pdm-agent-gw-1", "gw-1", reconnect_max_s=max_s, jitter=jitter, rng=random.Random(1))


def fight(c: IdentityConflict, start: float, closes: int, lasted: float = 0.5, gap: float = 1.0) -> list:
    """`closes` connections, each closed `lasted` s after its CONNACK; the waits returned."""
    waits, t = [], start
    for _ in range(closes):
        c.connected(t)
        waits.append(c.closed(t + lasted, in_flight=False))
        t += lasted + gap
    return waits


def test_detected_after_short_closes_in_a_row_then_backs_off_from_reconnect_max():
    c = conflict()
    waits = fight(c, 0, CONFLICT_CLOSES)
    assert waits[:-1] == [None] * (CONFLICT_CLOSES - 1)
    assert c.suspected and waits[-1] == 60
    report = c.report()
    assert report["device_id"] == "gw-1" and "own device.id" in report["fix"] and report["takeovers"] == 3


def test_the_wait_doubles_per_takeover_up_to_the_cap():
    c = conflict()
    fight(c, 0, CONFLICT_CLOSES)
    t, waits = 100.0, []
    for _ in range(6):  # under back-off the other copy holds the id for the whole wait: long connections
        c.connected(t)
        waits.append(c.closed(t + 50, in_flight=False))
        t += 200
    assert waits == [120, 240, 480, 480, 480, 480]
    assert max(waits) == 60 * BACKOFF_GROWTH
    assert c.takeovers == CONFLICT_CLOSES + 6


def test_a_long_connection_or_one_with_rows_in_flight_is_not_a_takeover():
    c = conflict()
    fight(c, 0, CONFLICT_CLOSES - 1)
    c.connected(10)
    assert c.closed(10 + SHORT_S + 1, in_flight=False) is None  # a held connection breaks the run
    fight(c, 20, CONFLICT_CLOSES - 1)
    c.connected(30)
    assert c.closed(30.2, in_flight=True) is None  # a refused message, not a takeover
    assert not c.suspected
    assert c.closed(31, in_flight=False) is None  # a failed attempt (no CONNACK) counts nothing


def test_a_connection_holding_twice_the_longest_wait_clears_it():
    c = conflict()
    fight(c, 0, CONFLICT_CLOSES)
    c.connected(100)
    assert c.closed(100 + 2 * 60 * (1 + 0.2), in_flight=False) == 120  # the other copy's wait, not a clear
    c.connected(500)
    assert not c.tick(500 + 2 * 8 * 60 - 1)
    assert c.tick(500 + 2 * 8 * 60) and not c.suspected
    assert c.status() == {} and c.wait_s == 0
    assert not c.tick(5000)  # once
    # the next fight is detected afresh, from the start of the schedule
    assert fight(c, 1000, CONFLICT_CLOSES)[-1] == 60


def test_a_close_after_the_clear_time_ends_it_too():
    c = conflict()
    fight(c, 0, CONFLICT_CLOSES)
    c.connected(100)
    assert c.closed(100 + 961, in_flight=False) is None and not c.suspected


def test_jitter_keeps_two_copies_apart_within_bounds():
    c = conflict(jitter=0.2)
    waits = [fight(c, 0, CONFLICT_CLOSES)[-1]]
    assert 48 <= waits[0] <= 72


def test_status_names_the_device_and_the_fix():
    c = conflict()
    assert c.status() == {}
    fight(c, 0, CONFLICT_CLOSES)
    doc = c.status()
    assert "clash suspected" in doc["mqtt_warning"]
    ic = doc["identity_conflict"]
    assert ic["device_id"] == "gw-1" and ic["client_id"] == "pdm-agent-gw-1" and ic["reconnect_s"] == 60
    assert ic["since"].endswith("Z") and "own device.id" in ic["fix"]


@pytest.mark.parametrize("max_s", [2.0, 60.0])
def test_guard_sets_the_paho_wait_and_logs_once(max_s, monkeypatch):
    import paho.mqtt.client as mqtt
    import structlog
    from structlog.testing import capture_logs

    now = [0.0]
    monkeypatch.setattr("agent.identity.time.monotonic", lambda: now[0])
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="pdm-agent-gw-1")
    delays = []
    with capture_logs() as logs:
        g = TakeoverGuard(client, "pdm-agent-gw-1", "gw-1", (0.5, max_s), structlog.get_logger("t"))
        g.policy.jitter = 0.0
        for _ in range(CONFLICT_CLOSES + 2):
            g.connected()
            now[0] += 0.5
            g.closed(in_flight=False)
            delays.append((client._reconnect_min_delay, client._reconnect_max_delay))
            now[0] += 1
        g.connected()
        now[0] += 16 * max_s + 0.1
        g.tick()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "'gw-1'" in errors[0]["event"] and errors[0]["device_id"] == "gw-1"
    assert delays[CONFLICT_CLOSES - 1:] == [(max_s, max_s), (2 * max_s, 2 * max_s), (4 * max_s, 4 * max_s)]
    assert (client._reconnect_min_delay, client._reconnect_max_delay) == (0.5, max_s) and not g.suspected
    assert logs[-1]["log_level"] == "info" and "no longer suspected" in logs[-1]["event"]


def test_pdm_agent_status_prints_the_conflict_and_the_fix():
    from agent.status_cmd import render

    c = conflict()
    fight(c, 0, CONFLICT_CLOSES)
    doc = {"state": "online", "version": "0.1.0", "ts": "2026-11-30T18:00:00.000Z", **c.status()}
    text = render(doc, "broker", "gw-1")
    assert "identity conflict since" in text and "own device.id" in text and "'gw-1'" in text
    assert "identity conflict" not in render({"state": "online"}, "broker", "gw-1")
