"""A real Mosquitto for tests, and a subscriber that records what it receives.

Tests never mock the broker: `Broker` runs `mosquitto -c <conf>` on a free loopback port in
a temporary directory, and can be stopped and started again on the same port to play an
outage. `Subscriber` is a plain paho client that collects (topic, payload, retain).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

INSTALL_HINT = (
    "mosquitto is not on PATH: the tests need a real MQTT broker. "
    "Install it (Debian/Ubuntu: `sudo apt-get install -y mosquitto`, or `make test`, which does it as root)."
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, up: bool = True) -> bool:
    """Wait until `host:port` accepts connections (or refuses them, with up=False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                if up:
                    return True
        except OSError:
            if not up:
                return True
        time.sleep(0.02)
    return False


class Broker:
    """One Mosquitto process on a fixed loopback port, restartable.

    Parameters
    ----------
    workdir : Path
        Holds mosquitto.conf, its log and (with persistence) its database.
    persistence : bool
        Keep sessions, queued QoS 1 messages and retained messages across `stop()` /
        `start()`, as a production broker does. Outage tests need it so a subscriber's
        session outlives the restart and nothing published meanwhile is lost to it.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, persistence: bool = False, listener: list[str] | None = None,
                 extra: list[str] | None = None) -> None:
        exe = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
        )
        if exe is None:
            raise RuntimeError(INSTALL_HINT)
        self.exe = exe
        self.workdir = Path(workdir)
        self.port = free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        # `listener` replaces the default anonymous plain-TCP listener (TLS, passwords); `extra`
        # lines go at the end (a bridge: `connection`, `address`, `topic`, ...).
        lines = [
            f"listener {self.port} {self.host}",
            *(listener or ["allow_anonymous true"]),
            f"persistence {'true' if persistence else 'false'}",
            "log_dest stdout",
            f"log_dest file {self.workdir}/live.log",  # flushed per line: tests read it while it runs
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if persistence:
            lines.append(f"persistence_location {self.workdir}/")
        if os.geteuid() == 0:
            # As root, mosquitto drops to user `mosquitto`, which cannot write our tmp dir.
            lines.append(f"user {getpass.getuser()}")
        lines += extra or []
        self.live_log = self.workdir / "live.log"
        self.conf.write_text("\n".join(lines) + "\n")
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        log = open(self.log, "ab")
        self._proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if not wait_port(self.host, self.port, timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}; log:\n{self.log.read_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: the persistence file is written) and wait for the port to close."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    received: float = field(default_factory=time.time)  # wall clock at the subscriber


class Subscriber:
    """A paho client that records every message on `topics` in a thread-safe list.

    With `client_id` set, it keeps a persistent session (clean_session=False, QoS 1), so
    messages published while it is disconnected (broker restart) are queued for it.
    It reconnects by itself and re-subscribes on every connect.
    """

    def __init__(self, host: str, port: int, topics: Iterable[str], client_id: str | None = None) -> None:
        self.topics = list(topics)
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        persistent = client_id is not None
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or "",
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise RuntimeError("subscriber could not subscribe")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        """Block until predicate(messages) is true; return the messages, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met in {timeout}s; {len(self.messages)} messages, "
                                       f"last: {self.messages[-3:]!r}"[:3000])
                self._cond.wait(remaining)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
