"""Framing at (re)open: the bytes before the first line boundary after every open are discarded
and counted, so half a line never becomes a sample.

A sensor that streams all the time is joined mid-line at agent start, after a replug, after the
sensor reboots. `-0.02962,-0.01875,0.93796,40.036` joined after 3 bytes reads
`02962,-0.01875,0.93796,40.036`: ax = 2962 g. The byte streams here are real: a pseudo-terminal
for the first open, a TCP socket (pyserial's socket:// URL) that drops and comes back for reopens.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np

from drivers.lines import LinesParser
from drivers.pty_server import format_lines
from drivers.simulator import Machine
from drivers.lines import SerialLinesSource

BLOCK = Machine(rate=1000, rpm=1780, seed=0).generate(200)
STREAM = format_lines(BLOCK)


def test_no_cut_of_the_stream_yields_a_wrong_first_sample():
    """Every place a port can open in a stream: the first row is a true, whole sample."""
    line_len = STREAM.index(b"\n") + 1
    wrong = 0
    for cut in range(1, 10 * line_len):
        p = LinesParser(4)
        rows = p.feed(STREAM[cut:cut + 7]) if cut % 2 else np.empty((0, 4))  # chunking must not matter
        rows = np.vstack([rows, p.feed(STREAM[cut + 7:] if cut % 2 else STREAM[cut:])])
        # Opened exactly at a line start or not, the first line is dropped: the reader cannot tell.
        first_whole = STREAM[:cut].count(b"\n") + 1
        expected = BLOCK[first_whole:]
        if not np.allclose(rows[:1], expected[:1], atol=1e-3):
            wrong += 1
        assert p.bytes_skipped_at_open == STREAM.index(b"\n", cut) + 1 - cut
        assert sum(p.errors.values()) == 0  # skipped at open is not an input error
    assert wrong == 0


def test_reset_discards_the_new_streams_partial_first_line():
    p = LinesParser(2, at_boundary=True)
    np.testing.assert_array_equal(p.feed(b"1,2\n3,"), [[1, 2]])
    p.reset()  # the port reopened: the new stream starts anywhere
    np.testing.assert_array_equal(p.feed(b"45,6\n5,6\n"), [[5, 6]])
    assert p.bytes_skipped_at_open == 5 and p.counters()["bytes_skipped_at_open"] == 5


def test_first_open_of_a_pty_mid_line():
    master, slave = os.openpty()
    try:
        src = SerialLinesSource("s", os.ttyname(slave), 115200, ("ax", "ay", "az", "temp"))
        assert src.read() is None and src.online  # opened (pyserial flushes input at open)
        os.write(master, b"02962,-0.01875,0.93796,40.036\n" + STREAM[:400])  # joined mid-line
        rows = []
        deadline = time.monotonic() + 10
        while sum(len(r) for r in rows) < STREAM[:400].count(b"\n") and time.monotonic() < deadline:
            frame = src.read()
            if frame is not None:
                rows.append(frame.samples)
        got = np.vstack(rows)
        np.testing.assert_allclose(got, BLOCK[:len(got)], atol=1e-3)
        assert src.counters()["bytes_skipped_at_open"] == len(b"02962,-0.01875,0.93796,40.036\n")
        src.close()
    finally:
        os.close(master)
        os.close(slave)


def test_every_reopen_of_a_socket_stream_mid_line():
    """The stream drops and comes back twice, each time mid-line: only whole, true lines are samples.

    pyserial's socket:// empties its input at open, so the server waits a moment after each
    accept; should the open still eat some bytes, the stream only starts later (still mid-line).
    """
    lines = STREAM.split(b"\n")
    good = [b"\n".join(lines[0:20]) + b"\n", b"\n".join(lines[20:40]) + b"\n", b"\n".join(lines[40:60]) + b"\n"]
    junk = [lines[60][3:] + b"\n", lines[61][5:] + b"\n", lines[62][1:] + b"\n"]  # tails of lines
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        for i in range(3):
            conn, _ = server.accept()
            time.sleep(1.0)
            conn.sendall(junk[i] + good[i] + lines[63][:4])  # each connection ends mid-line too
            time.sleep(0.3)
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    src = SerialLinesSource("s", f"socket://127.0.0.1:{port}", 115200, ("ax", "ay", "az", "temp"))
    src._transport.backoff_min = src._transport.backoff_max = 0.05
    rows = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = src.read()
        if frame is not None:
            rows.append(frame.samples)
        elif not t.is_alive() and src.counters()["reconnects"] >= 2:
            break  # the last connection is over and drained
    src.close()
    server.close()
    got = np.vstack(rows)
    # Every row is a true sample, in stream order: no tail of a line was taken for a sample.
    index = [int(np.argmin(np.abs(BLOCK[:60] - r).max(axis=1))) for r in got]
    assert all(np.allclose(r, BLOCK[i], atol=1e-3) for r, i in zip(got, index)), got
    assert index == sorted(index) and len(set(index)) == len(index)
    assert max(index) >= 20  # rows came after a reopen too
    assert src.counters()["reconnects"] == 2
    assert src.counters()["bytes_skipped_at_open"] >= sum(len(j) for j in junk)
