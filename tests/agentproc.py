"""Real processes for end-to-end tests: `pdm-agent simulate` on a pty and `pdm-agent run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pdm_agent(*args: str, **popen) -> subprocess.Popen:
    """Start `pdm-agent ARGS` as a child process (the installed console script's entry point)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    env.update(popen.pop("env", {}))
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *args], cwd=popen.pop("cwd", ROOT), env=env,
        stdout=popen.pop("stdout", subprocess.PIPE), stderr=popen.pop("stderr", subprocess.STDOUT), **popen,
    )


def start_simulator(link: Path, *, rate: int = 3200, fault: str | None = None, fault_at: float = 0.0,
                    seed: int = 1, log: Path | None = None) -> subprocess.Popen:
    args = ["simulate", "--link", str(link), "--protocol", "lines", "--rate", str(rate), "--seed", str(seed)]
    if fault:
        args += ["--fault", fault, "--fault-at", str(fault_at)]
    out = open(log, "wb") if log else subprocess.DEVNULL
    return wait_for_link(pdm_agent(*args, stdout=out, stderr=subprocess.STDOUT), link)


def wait_for_link(proc: subprocess.Popen, link: Path, timeout: float = 10) -> subprocess.Popen:
    """`proc` once the simulator it runs has created its pty symlink `link`; RuntimeError otherwise."""
    deadline = time.monotonic() + timeout
    while not link.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not create {link} (exit {proc.poll()})")
        time.sleep(0.05)
    return proc


def write_config(path: Path, *, broker, storage: Path, sensors: list[dict], interval: float = 5,
                 device: str = "e2e-gw", prefix: str = "pdm", **extra) -> Path:
    cfg = {
        "device": {"id": device},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix, "keepalive": 5,
                 "reconnect_min_s": 0.5, "reconnect_max_s": 2.0, "status_interval_s": 5.0},
        "storage": {"dir": str(storage)},
        "sensors": sensors,
        "aggregates": {"interval": interval},
        "logging": {"level": "info", "format": "json"},
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def lines_sensor(name: str, port: Path, *, learn_seconds: float = 20, rate: int = 3200) -> dict:
    return {
        "name": name, "port": str(port), "protocol": "lines", "sample_rate": rate,
        "channels": ["ax", "ay", "az", "temp"],
        "window": {"size": 2048, "hop": 1024},
        "detector": {"learn_seconds": learn_seconds},
    }


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def assert_clean_exit(proc: subprocess.Popen, code: int) -> None:
    """The agent stopped with exit 0 and printed no traceback (its stdout is a pipe)."""
    out = proc.stdout.read().decode()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_agent(config: Path, log: Path, **popen) -> subprocess.Popen:
    """`pdm-agent run` with its JSON log lines going to `log` (a file never fills like a pipe)."""
    return pdm_agent("run", "--config", str(config), stdout=open(log, "ab"), stderr=subprocess.STDOUT, **popen)


def log_events(log: Path) -> list[dict]:
    """The agent's JSON log lines, parsed (lines that are not JSON are skipped)."""
    import json

    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def raised_alerts(log: Path, kind_prefix: str = "alert ") -> list[str]:
    """Ids of the alerts the agent says it raised, in order."""
    return [e["id"] for e in log_events(log) if str(e.get("event", "")).startswith(kind_prefix) and "id" in e]


def sim_sensor(name: str, *, fault: str | None = None, fault_at: float = 0.0, learn_seconds: float = 8,
               rate: int = 3200, **alerts) -> dict:
    """An in-process simulated sensor with short windows, so tests learn and alert quickly."""
    return {
        "name": name, "protocol": "sim", "sample_rate": rate, "channels": ["ax", "ay", "az", "temp"],
        "window": {"size": 1024, "hop": 512},
        "simulator": {"fault": fault, "fault_at": fault_at, "seed": 3},
        "detector": {"learn_seconds": learn_seconds},
        **({"alerts": alerts} if alerts else {}),
    }


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s")
