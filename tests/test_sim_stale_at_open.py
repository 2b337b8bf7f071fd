"""The simulator's pty writer never hands a reader whole lines or frames from before it opened the port.

`pdm-agent simulate` streams whether or not anyone reads; when the pty is full it drops blocks.
It used to keep the rest of the block it was stuck on and write it once the reader had opened the
port (which empties the pty): whole frames from before the open, then the live stream. The agent
counted every frame dropped meanwhile as `frames_lost` (seen: 16-96 at start in about a third of
the runs), although they were sent while no port was open. Only the record already begun may be
finished now. Real pty, the agent's own transport and decoders, no timing assumptions.
"""

from __future__ import annotations

import os

import numpy as np

from drivers.frames import FrameDecoder, FrameEncoder
from drivers.lines import SerialLinesSource
from drivers.pty import open_pty_link
from drivers.pty_server import _Writer
from drivers.transport import SerialTransport

FRAMES_PER_BLOCK = 32  # many records per block: a cut inside the block leaves whole records behind it
SAMPLES_PER_FRAME = 4
LIVE_BLOCKS = 5


def _fill(writer: _Writer, next_block) -> None:
    """Write blocks nobody reads until the pty is full and the writer has dropped some."""
    for _ in range(100_000):
        writer.write(next_block())
        if writer.dropped_blocks >= 3:
            return
    raise AssertionError("the pty never filled")


def _pty(tmp_path):
    master, slave, _device = open_pty_link(str(tmp_path / "tty"))
    os.set_blocking(master, False)
    return master, slave, str(tmp_path / "tty")


def test_frames_after_open_are_the_live_stream_without_a_sequence_gap(tmp_path):
    master, slave, link = _pty(tmp_path)
    enc = FrameEncoder((1 / 2048,) * 4)
    counter = iter(range(10**9))

    def block() -> tuple[list[bytes], np.ndarray]:
        x = np.array([[next(counter) % 30000, 1, 2, 3] for _ in range(FRAMES_PER_BLOCK * SAMPLES_PER_FRAME)]) / 2048
        return [enc.encode(x[i:i + SAMPLES_PER_FRAME]) for i in range(0, len(x), SAMPLES_PER_FRAME)], x

    transport = SerialTransport(link, read_timeout=0.2)
    writer = _Writer(master)
    try:
        _fill(writer, lambda: block()[0])
        first_live = enc.sequence
        assert transport.read() == b"" and transport.online  # opened: pyserial empties the pty
        decoder = FrameDecoder(4)
        got, sent = [], []
        for _ in range(LIVE_BLOCKS):
            records, x = block()
            writer.write(records)
            sent.append(x)
            for _ in range(50):  # read what this block delivered
                got.append(decoder.feed(transport.read()))
                if decoder.last_sequence == enc.sequence - 1:
                    break
        assert decoder.last_sequence == enc.sequence - 1  # the live stream arrived, to its last frame
        assert (decoder.seq_gaps, decoder.frames_lost, decoder.crc_errors) == (0, 0, 0)
        assert decoder.frames_ok == LIVE_BLOCKS * FRAMES_PER_BLOCK  # no frame from before the open ...
        np.testing.assert_array_equal(np.concatenate(got), np.concatenate(sent))  # ... and every live one
        assert enc.sequence - decoder.frames_ok == first_live
    finally:
        transport.close()
        os.close(master)
        os.close(slave)


def test_lines_after_open_continue_the_live_stream_without_stale_lines(tmp_path):
    master, slave, link = _pty(tmp_path)
    numbered = [0]  # lines are "i,0,0,0": i counts every line the writer was given

    def block() -> list[bytes]:
        lines = [b"%d,0,0,0\n" % i for i in range(numbered[0], numbered[0] + FRAMES_PER_BLOCK)]
        numbered[0] += FRAMES_PER_BLOCK
        return lines

    source = SerialLinesSource("s", link, 115200, ("ax", "ay", "az", "temp"))
    writer = _Writer(master)
    try:
        _fill(writer, block)
        first_live = numbered[0]
        assert source.read() is None and source.online  # opened: pyserial empties the pty
        rows: list[int] = []
        for _ in range(LIVE_BLOCKS):
            writer.write(block())
            for _ in range(50):  # read what this block delivered
                frame = source.read()
                if frame is not None:
                    rows.extend(frame.samples[:, 0].astype(int).tolist())
                if rows and rows[-1] == numbered[0] - 1:
                    break
        # A line begun before the open is finished, and the parser skips it (it cannot tell it from
        # a cut one); if none had begun, the first live line is the one skipped. Nothing older arrives.
        assert rows[0] in (first_live, first_live + 1)
        assert rows == list(range(rows[0], numbered[0]))
    finally:
        source.close()
        os.close(master)
        os.close(slave)
