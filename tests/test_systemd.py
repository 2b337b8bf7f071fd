"""sd_notify (agent/systemd.py), the watchdog fed only on progress, and systemd/install.sh.

The notify socket is a real AF_UNIX datagram socket in tmp_path, as systemd's would be.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from agentproc import ROOT, sim_sensor, wait_until, write_config

from agent import __version__, logs
from agent.config import ConfigError, load_config
from agent.systemd import Notifier

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter .venv was made from


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock
    sock.close()


def _recv(sock) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_notifier_messages(notify_socket, tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier(str(tmp_path / "notify"))
    assert n.enabled and n.watchdog_interval == 2.0  # ping at half the timeout
    assert n.ready("1/1 sensors online")
    assert _recv(notify_socket) == {"READY": "1", "STATUS": "1/1 sensors online"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    msg = _recv(notify_socket)
    assert msg["RELOADING"] == "1" and before <= int(msg["MONOTONIC_USEC"]) <= before + 10_000_000
    n.watchdog(), n.stopping(), n.status("x")
    assert [_recv(notify_socket) for _ in range(3)] == [{"WATCHDOG": "1"}, {"STOPPING": "1"}, {"STATUS": "x"}]


def test_notifier_without_socket_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False and n.watchdog() is False
    # A supervisor that went away must not take the agent down.
    assert Notifier(str(tmp_path / "gone")).ready() is False


def test_watchdog_is_for_another_process(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier("/nonexistent").watchdog_interval is None


def test_watchdog_stops_while_a_stage_is_stuck(broker, notify_socket, tmp_path, monkeypatch):
    """A sensor's pipeline stage that stops making progress stops the WATCHDOG pings (systemd
    then restarts the agent); once it moves again, the pings resume."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # ping every 0.2 s
    from agent.service import Service

    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sim_sensor("pump1", learn_seconds=1)], interval=1)
    logs.configure("error", "json", stream=io.StringIO())
    service = Service(str(config), logs.get())
    service.stall_s = 1.0
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    try:
        assert _recv(notify_socket).get("READY") == "1"

        def pings(seconds: float) -> int:
            end, count = time.monotonic() + seconds, 0
            while time.monotonic() < end:
                try:
                    count += "WATCHDOG" in _recv(notify_socket)
                except (TimeoutError, socket.timeout):
                    pass
            return count

        assert pings(1.0) >= 2
        worker = wait_until(lambda: service.workers.get("pump1"), 5)
        stuck, release = threading.Event(), threading.Event()
        process = worker.pipeline.process

        def stuck_process(frame):  # a real hang inside the pipeline stage
            stuck.set()
            release.wait(30)
            return process(frame)

        worker.pipeline.process = stuck_process
        assert stuck.wait(5)
        pings(1.5)  # the stage goes quiet; after stall_s the pings stop
        assert pings(1.5) == 0
        release.set()
        worker.pipeline.process = process
        assert pings(1.5) >= 2
    finally:
        service.request_stop()
        runner.join(20)
    assert not runner.is_alive()


# -- install.sh / uninstall.sh into a staging root (DESTDIR) ----------------------------------

def _wheel(dest: Path) -> Path:
    """A pure-Python wheel of this checkout, so pip installs offline (--no-deps --no-index)."""
    dist = f"pdm_agent-{__version__}.dist-info"
    path = dest / f"pdm_agent-{__version__}-py3-none-any.whl"
    meta = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: pdm-agent\nVersion: {__version__}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\npdm-agent = agent.cli:main\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        names = []
        for pkg in ("agent", "models", "drivers"):
            for f in sorted((ROOT / pkg).rglob("*.py")):
                names.append(f.relative_to(ROOT).as_posix())
                z.write(f, names[-1])
        for name, text in meta.items():
            z.writestr(name, text)
            names.append(name)
        z.writestr(f"{dist}/RECORD", "".join(f"{n},,\n" for n in [*names, f"{dist}/RECORD"]))
    return path


def _run(script: str, root: Path, *args: str, **env: str) -> str:
    run = subprocess.run(["sh", str(ROOT / "systemd" / script), *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DESTDIR": str(root), "PYTHON": BASE_PYTHON, **env})
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_install_and_uninstall_into_a_staging_root(tmp_path):
    root = tmp_path / "root"
    wheel = _wheel(tmp_path)
    out = _run("install.sh", root, PACKAGE=str(wheel), PIP_ARGS="--no-deps --no-index")
    assert "systemd left alone" in out

    venv = root / "opt/pdm-agent/venv"
    assert (venv / "bin/pdm-agent").exists()
    version = subprocess.run([str(venv / "bin/python"), "-c", "import agent; print(agent.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == __version__
    unit = root / "etc/systemd/system/pdm-agent.service"
    assert unit.read_text() == (ROOT / "systemd/pdm-agent.service").read_text()
    link = root / "usr/local/bin/pdm-agent"
    assert os.readlink(link) == "/opt/pdm-agent/venv/bin/pdm-agent"
    secret = root / "etc/pdm-agent/mqtt-password"
    assert secret.read_text() == "" and stat.S_IMODE(secret.stat().st_mode) == 0o600

    # The installed config is the production template (no demo sensor), which refuses to run
    # until a sensor is added: see tests/test_packaging.py for what it holds.
    config = root / "etc/pdm-agent/config.yaml"
    assert config.read_text() == (ROOT / "systemd/production-config.yaml").read_text()
    with pytest.raises(ConfigError, match="no sensor configured"):
        load_config(config)

    # Re-installing (an upgrade) never overwrites an edited config.
    edited = config.read_text() + "# edited by the operator\n"
    config.write_text(edited)
    secret.write_text("s3cret\n")
    out = _run("install.sh", root, PACKAGE=str(wheel), PIP_ARGS="--no-deps --no-index")
    assert "kept your" in out and config.read_text() == edited
    assert (root / "etc/pdm-agent/config.yaml.dist").exists() and secret.read_text() == "s3cret\n"

    # Uninstall keeps the config (and state); --purge removes it.
    state = root / "var/lib/pdm-agent"
    state.mkdir(parents=True)
    _run("uninstall.sh", root)
    assert not (root / "opt/pdm-agent").exists() and not unit.exists() and not link.is_symlink()
    assert config.read_text() == edited and state.exists()
    _run("uninstall.sh", root, "--purge")
    assert not (root / "etc/pdm-agent").exists() and not state.exists()


def test_home_assistant_discovery_when_enabled(broker, tmp_path):
    """Off by default; when enabled, one retained device config describing every sensor."""
    import json

    from broker import Subscriber

    from agent.service import Service

    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sim_sensor("pump1", learn_seconds=1)], interval=1,
                          homeassistant={"enabled": True})
    logs.configure("error", "json", stream=io.StringIO())
    service = Service(str(config), logs.get())
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    try:
        sub = Subscriber(broker.host, broker.port, ["homeassistant/#"])
        sub.wait_for(lambda ms: bool(ms), 15)
        sub.close()
        late = Subscriber(broker.host, broker.port, ["homeassistant/#"])  # gets it as retained
        msgs = late.wait_for(lambda ms: bool(ms), 5)
        late.close()
    finally:
        service.request_stop()
        runner.join(20)
    assert msgs[0].topic == "homeassistant/device/pdm-agent-e2e-gw/config" and msgs[0].retain
    body = json.loads(msgs[0].payload)
    assert {"e2e-gw_pump1_alert", "e2e-gw_pump1_score", "e2e-gw_pump1_online"} <= set(body["cmps"])
    alert = body["cmps"]["e2e-gw_pump1_alert"]  # the condition across kinds, from the status
    assert alert["state_topic"] == "pdm/e2e-gw/status" and ".condition" in alert["value_template"]
    assert alert["json_attributes_topic"] == "pdm/e2e-gw/pump1/alert"
    assert body["availability"][0]["topic"] == "pdm/e2e-gw/status"
