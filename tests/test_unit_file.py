"""systemd/pdm-agent.service: `systemd-analyze verify` clean, exposure <= 2.0, and the agent
still works inside the kernel sandbox the unit asks for (see tests/unit_sandbox.py).

systemd is not PID 1 here, so the unit itself cannot be started: the verify/security tools
check the file, and the runtime check applies the same kernel mechanisms by hand.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from agentproc import ROOT, sim_sensor, stop, wait_until, write_config
from broker import Subscriber

UNIT = ROOT / "systemd" / "pdm-agent.service"
EXEC = "/opt/pdm-agent/venv/bin/pdm-agent"
MAX_EXPOSURE = 2.0


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (make test does it as root)", pytrace=False)
    return path


@pytest.fixture
def unit_copy(tmp_path) -> Path:
    """The shipped unit with ExecStart pointing at this checkout's console script.

    `verify` checks that ExecStart's binary exists; /opt/pdm-agent exists only after
    install.sh, so the copy differs from the shipped file in that one path and nothing else.
    """
    script = Path(sys.executable).with_name("pdm-agent")
    assert script.exists(), script
    text = UNIT.read_text()
    assert text.count(EXEC) == 1
    copy = tmp_path / "pdm-agent.service"
    copy.write_text(text.replace(EXEC, str(script)))
    return copy


def test_unit_verifies_without_any_message(unit_copy):
    # verify exits 0 on unknown keys and typos: the contract is an empty stderr.
    run = subprocess.run([_analyze(), "verify", str(unit_copy)], capture_output=True, text=True, timeout=60)
    assert run.stderr == "" and run.returncode == 0, run.stderr


def test_unit_exposure_at_most_two(unit_copy):
    run = subprocess.run([_analyze(), "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}",
                          str(unit_copy)], capture_output=True, text=True, timeout=60)
    out = run.stdout + run.stderr
    assert "Invalid syntax" not in out and "Unknown key" not in out, out
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    print(f"\nsystemd-analyze security --offline=yes: exposure {score}")
    assert score <= MAX_EXPOSURE and run.returncode == 0, out


def test_unit_has_the_service_contract():
    options: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            options.setdefault(key, []).append(value)
    one = {k: v[-1] for k, v in options.items()}
    assert one["Type"] == "notify" and int(one["WatchdogSec"]) > 0 and one["Restart"] == "on-failure"
    assert one["ExecReload"].endswith("-HUP $MAINPID")
    assert one["DynamicUser"] == "yes" and "dialout" in one["SupplementaryGroups"]
    assert one["StateDirectory"] == one["ConfigurationDirectory"] == "pdm-agent"
    assert one["LoadCredential"].startswith("mqtt-password:")
    assert one["ProtectSystem"] == "strict" and one["NoNewPrivileges"] == one["PrivateTmp"] == "yes"
    assert one["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert one["DevicePolicy"] == "closed" and any("ttyUSB" in d for d in options["DeviceAllow"])
    assert "@system-service" in options["SystemCallFilter"] and one["MemoryMax"]
    assert one["MemoryDenyWriteExecute"] == "yes"
    assert one["ExecStart"] == f"{EXEC} run --config /etc/pdm-agent/config.yaml"


def test_agent_works_inside_the_units_sandbox(broker, tmp_path):
    """NoNewPrivileges, MemoryDenyWriteExecute (PR_SET_MDWE), SystemCallFilter with
    SystemCallErrorNumber, RestrictAddressFamilies: numpy, paho, sqlite, structlog and the
    whole pipeline run and publish under them."""
    seccomp_ok = subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True).returncode == 0
    if not seccomp_ok:
        pytest.fail("python3-seccomp is missing: apt-get install python3-seccomp (make test does it as root)",
                    pytrace=False)
    _analyze()
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sim_sensor("pump1", learn_seconds=2)], interval=1)
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent.log"
    sandbox = [str(ROOT / "tests" / "unit_sandbox.py"), str(UNIT), "--"]
    probe = subprocess.run(["/usr/bin/python3", *sandbox, sys.executable, "-c",
                            "import mmap\ntry:\n mmap.mmap(-1, 4096, prot=7)\nexcept OSError: print('refused')"],
                           capture_output=True, text=True, timeout=30)
    assert probe.stdout.strip() == "refused", probe  # the sandbox really denies W+X memory
    agent = subprocess.Popen(["/usr/bin/python3", *sandbox, sys.executable, "-m", "agent.cli", "run",
                              "--config", str(config)], cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                             env={"PATH": "/usr/bin:/bin:/usr/sbin", "PYTHONPATH": str(ROOT)})
    try:
        wait_until(lambda: any(m.topic.endswith("/aggregate") for m in sub.snapshot()), 30,
                   what="an aggregate from the sandboxed agent")
        status = wait_until(lambda: [json.loads(m.payload) for m in sub.snapshot()
                                     if m.topic.endswith("/status")], 10, what="status")
        assert status[-1]["state"] == "online"
    finally:
        code = stop(agent)
        sub.close()
    out = log.read_text()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out and "Operation not permitted" not in out, out[-3000:]
