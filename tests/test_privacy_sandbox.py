"""The privacy options inside the unit's sandbox (tests/unit_sandbox.py: NoNewPrivileges,
MemoryDenyWriteExecute, the unit's SystemCallFilter and RestrictAddressFamilies): AES-GCM from
`cryptography` and OpenDP's samplers (a large Rust library) must work under them, or the
service would fail only on the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from agentproc import ROOT, sim_sensor, stop, wait_until, write_config
from broker import Subscriber

UNIT = ROOT / "systemd" / "pdm-agent.service"


def test_encrypted_state_and_noised_aggregates_work_inside_the_units_sandbox(broker, tmp_path):
    if subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True).returncode != 0:
        pytest.fail("python3-seccomp is missing: apt-get install python3-seccomp (make test does it as root)",
                    pytrace=False)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "model-key").write_bytes(os.urandom(32))
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sim_sensor("pump1", learn_seconds=2)], interval=1)
    cfg = yaml.safe_load(config.read_text())
    cfg["storage"]["encrypt"] = True
    cfg["aggregates"]["privacy"] = {"epsilon": 1.0, "bounds": {"*.rms_g": [0, 0.5]}}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent.log"
    sandbox = [str(ROOT / "tests" / "unit_sandbox.py"), str(UNIT), "--"]
    agent = subprocess.Popen(["/usr/bin/python3", *sandbox, sys.executable, "-m", "agent.cli", "run",
                              "--config", str(config)], cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                             env={"PATH": "/usr/bin:/bin:/usr/sbin", "PYTHONPATH": str(ROOT),
                                  "CREDENTIALS_DIRECTORY": str(creds)})
    try:
        noised = wait_until(lambda: [a for m in sub.snapshot() if m.topic.endswith("/aggregate")
                                     and (a := json.loads(m.payload))["count"] > 0], 60,
                            what="a noised aggregate from the sandboxed agent")
        assert noised[0]["privacy"]["mechanism"] == "laplace"
        wait_until(lambda: any(json.loads(m.payload).get("sensors", {}).get("pump1", {}).get("baseline", {})
                               .get("state") == "ready" for m in sub.snapshot() if m.topic.endswith("/status")),
                   30, what="baseline learned")
    finally:
        code = stop(agent)
        sub.close()
    out = log.read_text()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out and "Operation not permitted" not in out, out[-3000:]
    assert (tmp_path / "state" / "models" / "pump1.json.sealed").exists(), out[-3000:]
