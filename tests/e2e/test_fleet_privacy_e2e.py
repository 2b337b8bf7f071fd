"""`fleet.privacy` end to end: real Mosquitto, real ptys, real `pdm-agent` processes.

Two agents on simulated machines of one type learn 40 s baselines with contract keys and
`fleet.share_baseline`; gw-p adds `fleet.privacy` (epsilon 1, bounds as patterns over every
feature, the other settings at their defaults), gw-x shares exact statistics. gw-p's retained
share carries the privacy block and no calibration quantiles; after a restart with the same config
and storage it republishes the very share it kept (the noise is not drawn again). `pdm-agent fleet
merge` from the broker refuses the private + exact pair in words.
"""

from __future__ import annotations

import json
import subprocess
import sys

from agentproc import ROOT, log_events, pdm_agent, start_agent, stop, wait_for_link, wait_until, write_config
from broker import Subscriber

from agent.fleet_share import SHARE_KEYS

TYPE = "pump-a"
# Declared from a machine type's specification, wide; log-scale features start above 0.
BOUNDS = {"*.rms_g": [0.001, 20], "*.envelope_rms_g": [0.0001, 20], "*.peak_g": [0.001, 100],
          "*.crest_factor": [1, 50], "*.kurtosis": [1, 100], "*.skewness": [-10, 10], "*_g2": [1e-9, 100],
          "*.velocity_rms_mm_s": [0.01, 200], "temp.mean_c": [-20, 120], "temp.slope_c_per_min": [-10, 10]}


def machine(tmp_path, name: str, seed: int, rpm: float):
    link = tmp_path / f"tty{name}"
    out = open(tmp_path / f"sim-{name}.log", "wb")
    proc = pdm_agent("simulate", "--link", str(link), "--protocol", "lines", "--rate", "1000", "--seed", str(seed),
                     "--rpm", str(rpm), stdout=out, stderr=subprocess.STDOUT)
    return wait_for_link(proc, link), link


def sensor(link) -> dict:  # contract keys only
    return {"name": "pump1", "port": str(link), "protocol": "lines", "sample_rate": 1000,
            "channels": ["ax", "ay", "az", "temp"], "detector": {"learn_seconds": 40}}


def shares(sub: Subscriber, device: str) -> list:
    return [m for m in sub.snapshot() if m.topic == f"pdm/fleet/{TYPE}/baseline/{device}/pump1"]


def status_entries(sub: Subscriber, device: str) -> list[dict]:
    return [e for m in sub.snapshot() if m.topic == f"pdm/{device}/status"
            if (e := json.loads(m.payload).get("sensors", {}).get("pump1"))]


def test_private_share_is_noised_once_kept_across_a_restart_and_not_merged_with_exact_ones(broker, tmp_path):
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    procs, agents = [], {}
    try:
        for device, seed, rpm, fleet in (
                ("gw-p", 31, 1780.0, {"share_baseline": True, "machine_type": TYPE,
                                      "privacy": {"epsilon": 1, "bounds": BOUNDS}}),
                ("gw-x", 32, 1820.0, {"share_baseline": True, "machine_type": TYPE})):
            sim, link = machine(tmp_path, device, seed, rpm)
            cfg = write_config(tmp_path / f"{device}.yaml", broker=broker, storage=tmp_path / f"state-{device}",
                               sensors=[sensor(link)], device=device, fleet=fleet)
            procs.append(sim)
            agents[device] = cfg
        check = subprocess.run([sys.executable, "-m", "agent.cli", "config", "check", "--config",
                                str(agents["gw-p"])], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr  # every feature has bounds
        running = {d: start_agent(cfg, tmp_path / f"{d}.log") for d, cfg in agents.items()}
        procs += running.values()

        for device in agents:
            wait_until(lambda d=device: shares(sub, d), 120, what=f"{device}'s baseline shared on the fleet topic")
        private = json.loads(shares(sub, "gw-p")[-1].payload)
        exact = json.loads(shares(sub, "gw-x")[-1].payload)
        assert set(private) == set(exact) == SHARE_KEYS
        block = private["privacy"]
        assert {k: block[k] for k in ("mechanism", "epsilon", "delta", "unit", "covariance")} == {
            "mechanism": "gaussian", "epsilon": 1.0, "delta": 1e-6, "unit": "window", "covariance": "full"}  # the default
        cov = private["detector"]["cov"]
        assert any(cov[0][j] != 0 for j in range(1, len(cov)))  # full: the covariances are shared too
        assert len(block["bounds"]) == len(private["detector"]["keys"]) == 29  # every feature clipped
        assert set(private["calibration"]) == {"quantile", "alarm_ratio"}  # no median, no tail
        assert exact["privacy"] is None and {"median", "tail"} <= set(exact["calibration"])
        shown = wait_until(lambda: [e for e in status_entries(sub, "gw-p") if "shared" in e.get("fleet", {})],
                           20, what="gw-p's status saying what it shared")[-1]
        assert private["detector"]["n"] == shown["baseline"]["windows"] == shown["fleet"]["shared"]["windows"] > 2
        assert shown["fleet"]["shared"]["privacy"] == {"mechanism": "gaussian", "epsilon": 1.0, "delta": 1e-6,
                                                       "covariance": "full"}
        wait_until(lambda: [e for e in status_entries(sub, "gw-x") if "shared" in e.get("fleet", {})], 20,
                   what="gw-x's status saying what it shared")
        assert status_entries(sub, "gw-x")[-1]["fleet"]["shared"]["privacy"] is None

        before, kept = shares(sub, "gw-p")[-1].payload, tmp_path / "state-gw-p" / "fleet-share-pump1.json"
        assert kept.exists() and json.loads(kept.read_text())["payload"] == private
        count = len(shares(sub, "gw-p"))
        assert stop(running["gw-p"]) == 0
        statuses = len(status_entries(sub, "gw-p"))  # the stopped agent's last ones included
        log = tmp_path / "gw-p.log"
        mark = len(log_events(log))
        procs.append(start_agent(agents["gw-p"], log))  # same config, same storage
        wait_until(lambda: len(shares(sub, "gw-p")) > count, 60, what="gw-p's share published again after restart")
        after = shares(sub, "gw-p")[-1].payload
        assert json.loads(after)["detector"] == private["detector"]  # the kept release: no new noise
        assert after == before
        wait_until(lambda: [e for e in status_entries(sub, "gw-p")[statuses:] if "shared" in e.get("fleet", {})], 20,
                   what="gw-p's status after restart saying what it shares")
        said = [e for e in log_events(log)[mark:] if e.get("event") == "baseline shared with the fleet"]
        assert said and said[-1]["windows"] == private["detector"]["n"]

        merged = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", "--config", str(agents["gw-x"]),
                                 "--out", str(tmp_path / "prior")], capture_output=True, text=True, cwd=str(ROOT),
                                timeout=60)
        assert merged.returncode == 2, merged.stdout + merged.stderr
        assert "read 2 share(s)" in merged.stdout
        assert "private and exact shares cannot be merged" in merged.stderr and "gw-x" in merged.stderr
        assert "Traceback" not in merged.stderr and not (tmp_path / "prior").exists()
    finally:
        codes = [stop(p) for p in procs]
        sub.close()
    assert codes[-2:] == [0, 0]  # gw-x and the restarted gw-p stopped cleanly
