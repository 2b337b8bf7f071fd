"""`pdm-agent status` reading status documents of every shape it may meet (older and newer agents,
a Last Will, a stale retained `online`), and `alert_text` lines per kind."""

from __future__ import annotations

import time

from agent.records import iso_utc
from agent.status_cmd import _stale, render


def _doc(**pump) -> dict:
    return {"state": "online", "version": "0.1.0", "ts": iso_utc(time.time()), "uptime_s": 3720,
            "outbox": {"alerts": 0, "aggregates": 2}, "sensors": {"pump1": {
                "online": True, "windows": 12, "health": {"state": "ok"}, **pump}}}


def test_baseline_as_a_plain_state_or_as_a_document():
    text = render(_doc(baseline="ready", condition="clear"), "from here", "gw")
    assert "pump1: clear  health ok  baseline ready  windows 12" in text and "up 1h02m" in text
    text = render(_doc(baseline={"state": "learning", "progress": 0.42, "windows": 12, "learned_at": None}), "x", "gw")
    assert "baseline learning 42%" in text
    text = render(_doc(baseline={"state": "suspect", "progress": 1.0, "learned_at": "2026-11-30T10:00:00.000Z",
                                 "reason": "learned in ISO zone C"}), "x", "gw")
    assert "baseline suspect (learned 2026-11-30T10:00:00.000Z) (learned in ISO zone C)" in text


def test_condition_levels_and_last_alert_are_printed_and_older_documents_still_read():
    last = {"ts": "T", "sensor": "pump1", "level": "warning", "kind": "iso10816", "score": 0.7, "threshold": 2.8,
            "reason": [{"feature": "ax.velocity_rms_mm_s in zone C", "value": 3.1, "contribution": 1.0}]}
    text = render(_doc(baseline="ready", condition="alarm", levels={"anomaly": "alarm", "iso10816": "warning"},
                       last_alert=last), "from here", "gw")
    assert "pump1: ALARM" in text and "alerts active: anomaly alarm, iso10816 warning" in text
    assert "last alert: T pump1 WARNING iso10816: velocity 3.1 mm/s >= 2.8 mm/s" in text
    older = render(_doc(baseline="learning", alert_level="warning"), "x", "gw")  # before `condition` existed
    assert "pump1: WARNING  health ok  baseline learning" in older


def test_last_will_and_stale_online_documents():
    will = {"state": "offline", "version": "0.1.0", "ts": "2026-11-30T10:00:00.000Z", "will": True,
            "connected_at": "2026-11-30T10:00:00.000Z", "reason": "connection lost"}
    text = render(will, "from the broker", "gw")
    assert text.startswith("pdm-agent gw: offline") and "Last Will" in text and "made 2026-11-30T10:00:00.000Z" in text
    assert _stale(_doc(), 30.0) is None
    old = {**_doc(), "ts": iso_utc(time.time() - 600)}
    assert 590 < _stale(old, 30.0) < 700
    assert _stale({**old, "state": "offline"}, 30.0) is None  # an offline document is not stale, just offline
