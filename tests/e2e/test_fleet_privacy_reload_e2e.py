"""`fleet.privacy` turned on and changed on a running agent: real Mosquitto, `pdm-agent simulate` on a
pty, the real `pdm-agent run`, SIGHUP reloads, `pdm-agent baseline reset` and a restart.

An agent shares its baseline exactly; privacy set by a reload clears that exact share from the
broker (the baseline has no clipped sums: it is not shared); after `baseline reset` the next baseline
is shared privately, its `n` the windows learned; epsilon lowered by a reload and the agent restarted:
the same released share comes back byte for byte (noise is drawn once per baseline), not a second
noised release of the same windows.
"""

from __future__ import annotations

import json
import signal
import time

import yaml
from agentproc import (lines_sensor, log_events, pdm_agent, start_agent, start_simulator, stop, wait_until,
                       write_config)
from broker import Subscriber

from agent.fleet_share import SHARE_KEYS

TOPIC = "pdm/fleet/pump-a/baseline/gw-p/pump1"
# Declared physical ranges, not taken from the simulated machine's data.
BOUNDS = {"*.rms_g": [0.001, 10], "*.peak_g": [0.001, 50], "*.crest_factor": [1, 20], "*.kurtosis": [1, 50],
          "*.skewness": [-10, 10], "*.band_*_g2": [1e-9, 10], "*.velocity_rms_mm_s": [0.01, 50],
          "*.envelope_rms_g": [1e-5, 10], "temp.mean_c": [0, 120], "temp.slope_c_per_min": [-10, 10]}


def on_topic(sub: Subscriber) -> list[bytes]:
    return [m.payload for m in sub.snapshot() if m.topic == TOPIC]


def status(sub: Subscriber) -> dict:
    docs = [json.loads(m.payload) for m in sub.snapshot() if m.topic == "pdm/gw-p/status" and m.payload]
    return docs[-1].get("sensors", {}).get("pump1", {}) if docs else {}


def set_privacy(path, privacy) -> None:
    cfg = yaml.safe_load(path.read_text())
    cfg["fleet"]["privacy"] = privacy
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_privacy_set_by_reload_then_reset_then_epsilon_changed_and_restarted(broker, tmp_path):
    link = tmp_path / "ttyP"
    sim = start_simulator(link, seed=21)
    cfg = write_config(tmp_path / "agent.yaml", broker=broker, storage=tmp_path / "state", device="gw-p",
                       sensors=[lines_sensor("pump1", link, learn_seconds=8)],
                       fleet={"share_baseline": True, "machine_type": "pump-a"})
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        exact = json.loads(wait_until(lambda: on_topic(sub), 90, what="the exact share")[-1])
        assert exact["privacy"] is None and "median" in exact["calibration"]

        set_privacy(cfg, {"epsilon": 10, "bounds": BOUNDS})
        agent.send_signal(signal.SIGHUP)
        wait_until(lambda: on_topic(sub)[-1] == b"", 30, what="the exact share cleared from the broker")
        reason = wait_until(lambda: status(sub).get("fleet", {}).get("not_shared"), 30, what="status: not shared")
        assert "learned without fleet.privacy" in reason["reason"]

        reset = pdm_agent("baseline", "reset", "--config", str(cfg))
        assert reset.wait(30) == 0, reset.stdout.read().decode()
        private = json.loads(wait_until(lambda: [p for p in on_topic(sub) if p and json.loads(p)["privacy"]], 90,
                                        what="the private share of the next baseline")[-1])
        assert set(private) == SHARE_KEYS and private["privacy"]["epsilon"] == 10
        assert set(private["calibration"]) == {"quantile", "alarm_ratio"}  # no median or tail of this machine
        assert private["learned_at"] != exact["learned_at"]
        shown = wait_until(lambda: (status(sub).get("fleet", {}).get("shared") or {}).get("learned_at")
                           == private["learned_at"] and status(sub), 30, what="status: shared privately")
        assert private["detector"]["n"] == shown["baseline"]["windows"] == shown["fleet"]["shared"]["windows"]
        released = on_topic(sub)[-1]

        set_privacy(cfg, {"epsilon": 1, "bounds": BOUNDS})
        agent.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert stop(agent) == 0
        before = len(on_topic(sub))
        agent = start_agent(cfg, tmp_path / "agent.log")
        again = wait_until(lambda: on_topic(sub)[before:], 60, what="the share republished after the restart")
        assert again[0] == released  # the same noise: this baseline is not released a second time
        late = Subscriber(broker.host, broker.port, [TOPIC])
        try:
            assert wait_until(lambda: on_topic(late), 15, what="the retained share")[-1] == released
        finally:
            late.close()
        warned = [e for e in log_events(tmp_path / "agent.log") if str(e.get("event", "")).startswith(
            "fleet.privacy changed: this baseline's share, already released")]
        assert warned and warned[-1]["released_epsilon"] == 10
        assert "Traceback" not in (tmp_path / "agent.log").read_text()
    finally:
        stop(agent)
        stop(sim)
        sub.close()
