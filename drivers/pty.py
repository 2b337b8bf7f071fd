"""Pseudo-terminal plumbing shared by the simulators (drivers/pty_server.py streams lines or frames,
drivers/modbus_slave.py answers polls): the pty and its link, and SIGTERM/SIGINT -> stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
import tty


def link_error(link: str, exc: OSError) -> int:
    """Say why --link could not be made; exit 2 when the path is the user's to fix."""
    reason = str(exc) if isinstance(exc, FileExistsError) else f"{exc.strerror or exc}"
    print(f"simulate: cannot create the pty link {link}: {reason}", file=sys.stderr)
    return 2 if isinstance(exc, (FileExistsError, FileNotFoundError, PermissionError)) else 1


def open_pty_link(link: str) -> tuple[int, int, str]:
    """Open a pty and point `link` at its slave device; returns (master_fd, slave_fd, device).

    The slave is set raw (no echo: an echoing pty would send our data back into the master's
    input, fill it and block). The slave fd stays open for the life of the link, so a reader
    that closes and reopens the port does not hang up the master. The link is replaced
    atomically, so a reader never sees it missing or half-made.

    >>> master, slave, device = open_pty_link("/tmp/pdm-doctest-pty")
    >>> os.path.realpath("/tmp/pdm-doctest-pty") == device
    True
    >>> os.unlink("/tmp/pdm-doctest-pty"); os.close(master); os.close(slave)
    """
    if os.path.lexists(link) and not os.path.islink(link):
        # Only ever replace our own kind of thing: a user's file at that path is not ours.
        raise FileExistsError(f"{link} exists and is not a symlink; refusing to replace it")
    master, slave = os.openpty()
    tty.setraw(slave)
    device = os.ttyname(slave)
    tmp = f"{link}.{os.getpid()}.tmp"
    try:
        os.symlink(device, tmp)
        os.replace(tmp, link)
    except OSError:
        os.close(master)
        os.close(slave)
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return master, slave, device


def install_signal_handlers(stop: threading.Event):
    """SIGTERM/SIGINT set `stop`; only possible in the main thread (tests run serve in a thread)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore
