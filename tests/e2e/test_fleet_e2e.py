"""Federated baselines end to end: real Mosquitto, real ptys, real `pdm-agent` processes.

Two agents on simulated machines of one type (different seeds, shaft speeds 1780 and 1830 rpm),
contract keys plus `fleet.share_baseline`, learn 40 s baselines and publish their statistics,
retained, on the fleet topic; once they have stopped, `pdm-agent fleet merge --config` reads the
retained shares from the broker and writes a signed prior; a third agent on a new machine (another
seed, 1750 rpm), configured with `learn_seconds: 3600` and `fleet.prior`, is `ready` from its
first status (no learning phase) and raises an anomaly alert on an outer-race fault seeded 12 s
after its start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from agentproc import ROOT, log_events, pdm_agent, start_agent, stop, wait_for_link, wait_until, write_config
from broker import Subscriber

from agent.fleet_share import SHARE_KEYS
from models import bundle

TYPE = "pump-a"


def machine(tmp_path, name: str, seed: int, rpm: float, fault: str | None = None, fault_at: float = 0.0):
    link = tmp_path / f"tty{name}"
    args = ["simulate", "--link", str(link), "--protocol", "lines", "--rate", "1000", "--seed", str(seed),
            "--rpm", str(rpm)]
    if fault:
        args += ["--fault", fault, "--fault-at", str(fault_at)]
    out = open(tmp_path / f"sim-{name}.log", "wb")
    return wait_for_link(pdm_agent(*args, stdout=out, stderr=subprocess.STDOUT), link), link


def sensor(link, learn_seconds: float) -> dict:  # contract keys only
    return {"name": "pump1", "port": str(link), "protocol": "lines", "sample_rate": 1000,
            "channels": ["ax", "ay", "az", "temp"], "detector": {"learn_seconds": learn_seconds}}


def messages(sub: Subscriber, suffix: str) -> list:
    return [m for m in sub.snapshot() if m.topic.endswith(suffix)]


def anomaly_alerts(sub: Subscriber, device: str) -> list:
    return [(m.received, json.loads(m.payload)) for m in messages(sub, f"/{device}/pump1/alert")
            if json.loads(m.payload).get("kind") == "anomaly"]


def test_shared_baselines_merge_into_a_signed_prior_a_new_machine_scores_from_the_start(broker, tmp_path):
    key, pub = bundle.keygen(str(tmp_path / "fleet"))
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    procs, donors, codes = [], [], []
    try:
        for device, seed, rpm in (("gw-a", 11, 1780.0), ("gw-b", 12, 1830.0)):
            sim, link = machine(tmp_path, device, seed, rpm)
            cfg = write_config(tmp_path / f"{device}.yaml", broker=broker, storage=tmp_path / f"state-{device}",
                               sensors=[sensor(link, 40)], device=device,
                               fleet={"share_baseline": True, "machine_type": TYPE})
            procs += [sim, start_agent(cfg, tmp_path / f"{device}.log")]
            donors.append((device, cfg))
        for device, _ in donors:
            wait_until(lambda d=device: messages(sub, f"pdm/fleet/{TYPE}/baseline/{d}/pump1"), 120,
                       what=f"{device}'s baseline shared on the fleet topic")
        for device, _ in donors:
            share = json.loads(messages(sub, f"pdm/fleet/{TYPE}/baseline/{device}/pump1")[-1].payload)
            assert set(share) == SHARE_KEYS and share["device"] == device and share["machine_type"] == TYPE
            assert share["detector"]["name"] == "gaussian" and share["detector"]["n"] == 10
            shown = wait_until(lambda d=device: [e for m in messages(sub, f"pdm/{d}/status")
                                                 if "fleet" in (e := json.loads(m.payload).get("sensors", {})
                                                                .get("pump1", {}))],
                               15, what=f"{device}'s status saying what it shared")
            assert shown[-1]["fleet"]["shared"]["learned_at"] == shown[-1]["baseline"]["learned_at"] == share[
                "learned_at"] is not None  # the baseline as learned, shared once learning ended
        for p in procs:
            stop(p)
        procs = []

        merged = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", "--config", str(donors[0][1]),
                                 "--out", str(tmp_path / "prior"), "--key", key], capture_output=True, text=True,
                                cwd=str(ROOT), timeout=60)
        assert merged.returncode == 0, merged.stdout + merged.stderr
        assert "read 2 share(s)" in merged.stdout and "pooled 20 windows of 2 machine(s)" in merged.stdout
        assert bundle.verify(str(tmp_path / "prior"), [pub]).manifest["model"]["kind"] == "fleet-prior"

        fault_at = 12.0
        started = time.time()
        sim, link = machine(tmp_path, "new", 13, 1750.0, fault="outer-race", fault_at=fault_at)
        cfg = write_config(tmp_path / "new.yaml", broker=broker, storage=tmp_path / "state-new",
                           sensors=[sensor(link, 3600)], device="gw-new", models={"trusted_keys": [pub]},
                           fleet={"machine_type": TYPE, "prior": str(tmp_path / "prior")})
        log = tmp_path / "new.log"
        procs = [sim, start_agent(cfg, log)]
        wait_until(lambda: anomaly_alerts(sub, "gw-new"), 60,
                   what="an anomaly alert from the new machine (learn_seconds 3600, started from the prior)")
        alert_at, alert = anomaly_alerts(sub, "gw-new")[0]
        assert alert["level"] in ("warning", "alarm") and alert_at > started + fault_at
        statuses = [json.loads(m.payload) for m in messages(sub, "pdm/gw-new/status")]
        entries = [s["sensors"]["pump1"] for s in statuses if "pump1" in s.get("sensors", {})]
        assert entries and all(e["baseline"]["state"] == "ready" for e in entries)  # never `learning`
        assert "fleet prior" in entries[0]["baseline"]["reason"]
        assert entries[0]["baseline"]["calibration"]["method"] == "fleet"
        assert entries[-1]["fleet"]["prior"]["machines"] == 2 and entries[-1]["fleet"]["prior"]["windows"] == 20
        assert any(e.get("event") == "started from the fleet prior: scoring from the first window"
                   for e in log_events(log))
        print(f"\nnew machine from the prior: fault at {fault_at:.0f} s, anomaly alert "
              f"{alert_at - started:.1f} s after start (its own learn_seconds: 3600)")
    finally:
        codes = [stop(p) for p in procs]
        sub.close()
    assert codes[1:] == [0]  # the new machine's agent stopped cleanly
