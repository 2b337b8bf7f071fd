"""The agent as systemd runs it: a fake NOTIFY_SOCKET, SIGHUP reloads, `config edit`, health.

One real `pdm-agent run` (simulated sensor, real Mosquitto) goes through a service's life:
READY and WATCHDOG pings; health on the retained status topic; an invalid edit refused by
`config edit`; an invalid file reloaded by SIGHUP (refused, still publishing); a valid edit
that SIGHUPs the agent and takes effect with the learned baseline kept; STOPPING on SIGTERM.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

from agentproc import log_events, pdm_agent, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Subscriber


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket; collects every message."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._recv, daemon=True)
        self._thread.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, socket.timeout):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return [m for _, m in self.messages]

    def count(self, key: str) -> int:
        return sum(1 for m in self.snapshot() if key in m)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _status(sub: Subscriber) -> dict:
    msgs = [m for m in sub.snapshot() if m.topic == "pdm/e2e-gw/status"]
    return json.loads(msgs[-1].payload) if msgs else {}


def _editor(tmp_path, name: str, content: str) -> str:
    """A scripted $EDITOR: overwrites the file it is given with `content`."""
    script = tmp_path / name
    script.write_text(f"#!{sys.executable}\nimport sys\nopen(sys.argv[1], 'w').write({content!r})\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_service_lifecycle_notify_reload_edit_health(broker, tmp_path):
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sim_sensor("pump1", learn_seconds=2)], interval=1)
    valid_text = config.read_text()
    notify = NotifySocket(tmp_path / "notify")
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    try:
        # READY only once the pipeline is up, with a one-line STATUS; then watchdog pings.
        wait_until(lambda: notify.count("READY"), 20, what="READY=1")
        ready = next(m for m in notify.snapshot() if "READY" in m)
        assert "sensors online" in ready.get("STATUS", ""), ready
        wait_until(lambda: notify.count("WATCHDOG") >= 2, 10, what="WATCHDOG=1 pings")

        # Health on the retained status topic, once the baseline has been learned.
        health = wait_until(lambda: (s := _status(sub)).get("sensors", {}).get("pump1", {}).get("baseline", {}).get("state") == "ready"
                            and s, 30, what="baseline ready on the status topic")
        pump = health["sensors"]["pump1"]
        assert health["state"] == "online" and health["version"] and health["uptime_s"] > 0
        assert health["rss_mib"] > 10 and "cpu_percent" in health
        assert {"alerts", "aggregates", "inflight", "dropped"} <= set(health["outbox"])
        assert pump["online"] is True and "@" in pump["model"] and pump["windows"] > 0
        assert health["config"]["reload"]["result"] == "none"

        # `config edit` with an editor that writes an invalid file: refused, file untouched.
        bad = valid_text.replace("interval: 1", "intervall: 1")
        edit = pdm_agent("config", "edit", "--config", str(config),
                         env={"EDITOR": _editor(tmp_path, "bad-editor", bad)}, stdin=subprocess.DEVNULL)
        out, _ = edit.communicate(timeout=30)
        assert edit.returncode == 2, out
        assert "did you mean 'interval'" in out.decode() and "left unchanged" in out.decode()
        assert config.read_text() == valid_text
        # The error cites the kept .rejected copy, at the line where that copy has the typo.
        rejected = tmp_path / "config.yaml.rejected"
        line = next(i for i, t in enumerate(rejected.read_text().splitlines(), 1) if "intervall" in t)
        assert f"aggregates.intervall: unknown key 'intervall'; did you mean 'interval'? ({rejected}:{line})" \
            in out.decode(), out
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".config-edit-")]

        # An invalid file reloaded by SIGHUP: refused with key path and line, old config runs on.
        config.write_text(bad)
        reloads = notify.count("RELOADING")
        agent.send_signal(signal.SIGHUP)
        wait_until(lambda: notify.count("RELOADING") > reloads, 10, what="RELOADING=1")
        msgs = notify.snapshot()
        i = max(k for k, m in enumerate(msgs) if "RELOADING" in m)
        assert int(msgs[i]["MONOTONIC_USEC"]) > 0
        wait_until(lambda: any("READY" in m for m in notify.snapshot()[i + 1:]), 10, what="READY after reload")
        refused = wait_until(lambda: [e for e in log_events(log) if e.get("event", "").startswith("reload refused")],
                             5, what="reload refused log line")
        assert "aggregates.intervall: unknown key" in refused[0]["error"]
        assert f"({config}:" in refused[0]["error"]  # the file and its line
        n = len(sub.snapshot())
        wait_until(lambda: sum(1 for m in sub.snapshot()[n:] if m.topic.endswith("/aggregate")) >= 2, 10,
                   what="aggregates still published after a refused reload")
        config.write_text(valid_text)

        # A valid edit: replaced atomically, the running agent reloads, the change takes effect.
        changed = valid_text.replace("interval: 1", "interval: 2")
        reloads = notify.count("RELOADING")
        edit = pdm_agent("config", "edit", "--config", str(config),
                         env={"EDITOR": _editor(tmp_path, "good-editor", changed)}, stdin=subprocess.DEVNULL)
        out, _ = edit.communicate(timeout=30)
        assert edit.returncode == 0 and b"asked to reload" in out, out
        assert config.read_text() == changed
        wait_until(lambda: notify.count("RELOADING") > reloads, 10, what="RELOADING=1 after config edit")
        n = len(sub.snapshot())
        agg = wait_until(lambda: [json.loads(m.payload) for m in sub.snapshot()[n:]
                                  if m.topic.endswith("/aggregate") and json.loads(m.payload)["interval_s"] == 2],
                         15, what="aggregates at the new interval")
        assert agg[0]["count"] > 0
        events = [e.get("event") for e in log_events(log)]
        assert "learned baseline restored" in events and "configuration reloaded" in events
        status = wait_until(lambda: (s := _status(sub)).get("config", {}).get("reload", {}).get("result") == "applied"
                            and s, 15, what="reload result on the status topic")
        assert status["sensors"]["pump1"]["baseline"]["state"] == "ready"  # the learned baseline survived
    finally:
        code = stop(agent)
        sub.close()
    wait_until(lambda: notify.count("STOPPING"), 5, what="STOPPING=1")
    notify.close()
    assert code == 0
    assert "Traceback" not in log.read_text()

