"""SerialTransport against real pseudo-terminals (no mocks of the serial layer)."""

import os
import time
import tty

import pytest
from structlog.testing import CapturingLogger

from drivers.transport import SerialTransport

FAST = dict(read_timeout=0.05, backoff_min=0.02, backoff_max=0.2)


class Pty:
    """A pty whose slave is reachable through `link`, as a by-id symlink would be."""

    def __init__(self, link):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tmp = link.with_name(link.name + ".new")
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, link)  # atomic repoint, like udev does

    def unplug(self):
        os.close(self.master)
        os.close(self.slave)


def read_until(transport, n_bytes, timeout=5.0):
    """Read until n_bytes arrived; return the list of blocks read."""
    blocks, deadline = [], time.monotonic() + timeout
    while sum(map(len, blocks)) < n_bytes and time.monotonic() < deadline:
        data = transport.read()
        if data:
            blocks.append(data)
    return blocks


def events(log):
    return [c.args[0] for c in log.calls]


@pytest.fixture
def link(tmp_path):
    return tmp_path / "serial-by-id-sensor"


def test_reads_arrive_in_blocks(link):
    pty = Pty(link)
    t = SerialTransport(str(link), **FAST, log=CapturingLogger())
    try:
        assert t.read() == b""  # opens, nothing sent yet
        assert t.online
        payload = b"".join(b"%d,0.5,-0.25,41.2\n" % i for i in range(150))  # ~3 KB
        os.write(pty.master, payload)
        blocks = read_until(t, len(payload))
        assert b"".join(blocks) == payload
        # A byte-by-byte or line-by-line reader would need 150+ calls.
        assert len(blocks) <= 3, [len(b) for b in blocks]
        assert t.bytes_read == len(payload)
    finally:
        t.close()
        pty.unplug()


def test_pyserial_url_loop():
    t = SerialTransport("loop://", **FAST, log=CapturingLogger())
    assert t.write(b"1,2,3\n4,5,6\n") == 12
    assert b"".join(read_until(t, 12)) == b"1,2,3\n4,5,6\n"
    assert t.online and t.reconnects == 0
    t.close()
    assert not t.online


def test_unplug_then_replug_on_a_new_pty_recovers_by_itself(link):
    log = CapturingLogger()
    first = Pty(link)
    t = SerialTransport(str(link), **FAST, log=log)
    try:
        assert t.read() == b"" and t.online  # pyserial flushes input at open: open first
        os.write(first.master, b"1,2\n")
        assert b"".join(read_until(t, 4)) == b"1,2\n"
        first.unplug()

        deadline = time.monotonic() + 5
        while t.online and time.monotonic() < deadline:
            assert t.read() == b""
        assert not t.online and t.last_error
        for _ in range(10):  # retrying on a dead link: no raise, no new log lines
            assert t.read() == b""
        assert events(log).count("sensor port lost") == 1

        unplugged_at = time.monotonic()
        second = Pty(link)  # the same link now points to a different /dev/pts node
        got, deadline = b"", time.monotonic() + 10
        # A sensor keeps streaming; bytes sent before the port is (re)opened are flushed.
        while b"3,4\n" not in got and time.monotonic() < deadline:
            os.write(second.master, b"3,4\n")
            got += t.read()
        recovery_s = time.monotonic() - unplugged_at
        print(f"recovery after replug: {recovery_s * 1000:.0f} ms")
        assert b"3,4\n" in got
        assert t.online and t.reconnects == 1
        assert events(log) == ["sensor port opened", "sensor port lost", "sensor port reopened"]
        second.unplug()
    finally:
        t.close()


def test_nonexistent_port_returns_empty_without_raising(tmp_path):
    log = CapturingLogger()
    t = SerialTransport(str(tmp_path / "no-such-tty"), **FAST, log=log)
    for _ in range(5):
        assert t.read() == b""
    assert not t.online and t.bytes_read == 0
    assert "no-such-tty" in t.last_error
    assert t.write(b"x") == 0
    assert events(log) == ["sensor port unavailable, retrying"]  # once, not per retry


def test_unknown_url_scheme_is_an_error_not_a_crash():
    t = SerialTransport("nosuch://x", **FAST, log=CapturingLogger())
    assert t.read() == b"" and not t.online and t.last_error


def test_backoff_keeps_read_responsive_and_is_respected(link):
    t = SerialTransport(str(link), read_timeout=0.05, backoff_min=30, backoff_max=60, log=CapturingLogger())
    assert t.read() == b""  # first attempt fails: link does not exist yet
    pty = Pty(link)
    try:
        started = time.monotonic()
        for _ in range(3):
            assert t.read() == b""
        # Each read slept at most read_timeout, not the 15-30 s back-off ...
        assert time.monotonic() - started < 2
        # ... and did not try to open before the back-off was over.
        assert not t.online
        t.close()  # an explicit close resets the back-off: the next read opens at once
        t.read()
        assert t.online
    finally:
        t.close()
        pty.unplug()


def test_socket_url_peer_close_goes_offline_and_reconnects():
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    t = SerialTransport(f"socket://127.0.0.1:{port}", **FAST, log=CapturingLogger())
    try:
        for payload in (b"1,2\n" * 500, b"3,4\n" * 500):
            assert t.read() == b""  # connects; the server has sent nothing yet
            conn, _ = server.accept()
            conn.sendall(payload)
            blocks = read_until(t, len(payload))
            assert b"".join(blocks) == payload
            # socket:// in_waiting says only "some": the burst must still come in blocks.
            assert len(blocks) <= 3, [len(b) for b in blocks]
            conn.close()  # the peer goes away: readable, but 0 bytes
            deadline = time.monotonic() + 5
            while t.online and time.monotonic() < deadline:
                t.read()
            assert not t.online
            deadline = time.monotonic() + 5
            while not t.online and time.monotonic() < deadline:
                t.read()
        assert t.reconnects == 2
    finally:
        t.close()
        server.close()
