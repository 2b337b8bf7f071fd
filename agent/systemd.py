"""sd_notify(3) in a few lines: READY, RELOADING, STOPPING, WATCHDOG, STATUS.

A no-op when NOTIFY_SOCKET is absent (run by hand, in tests, under another supervisor).
The protocol is one datagram of newline-separated KEY=VALUE lines to a unix socket;
a leading '@' names an abstract socket.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """sd_notify(3) messages to systemd: READY=1 once the service runs, RELOADING=1 around a SIGHUP,
    STOPPING=1, STATUS= lines and WATCHDOG=1 pings; does nothing when not started by systemd
    (no $NOTIFY_SOCKET)."""

    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if self._address and self._address.startswith("@"):
            self._address = "\0" + self._address[1:]
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        ours = pid is None or pid == str(os.getpid())
        # systemd asks for a ping at least every WATCHDOG_USEC; ping at half of it.
        self.watchdog_interval = int(usec) / 2e6 if usec and ours else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *lines: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall("\n".join(lines).encode())
            return True
        except OSError:
            return False  # a supervisor that went away must not take the agent down

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")
