"""Binary frames: encoder/decoder contract, damage and gaps, and a real pty at 3.2 kHz x 3 axes."""

from __future__ import annotations

import os
import threading
import time
import tty

import numpy as np
import pytest

from drivers.frames import SEQ_MOD, FrameDecoder, FrameEncoder, SerialFramesSource, crc16

RATE = 3200
AXES = 3
SCALE = 1 / 2048


def _signal(n: int, seed: int = 0) -> np.ndarray:
    # Exactly representable in int16 counts, so a round trip must be exact.
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, size=(n, AXES)) * SCALE


def test_crc_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


@pytest.mark.parametrize("fmt", ["int16", "float32"])
def test_round_trip_in_any_chunking(fmt):
    x = _signal(1000)
    enc = FrameEncoder((SCALE,) * AXES if fmt == "int16" else (1.0,) * AXES, sample_format=fmt)
    data = enc.encode_many(x, 64)
    dec = FrameDecoder(AXES)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.integers(0, len(data), 200))
    out = np.concatenate([dec.feed(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)])])
    np.testing.assert_allclose(out, x, rtol=1e-6)
    assert dec.counters() == {"frames_ok": 16, "samples": 1000, "crc_errors": 0, "bad_headers": 0,
                              "wrong_channels": 0, "bytes_skipped": 0, "seq_gaps": 0, "frames_lost": 0}


def test_corrupted_frame_is_counted_and_the_stream_resynchronizes():
    x = _signal(640)
    frames = [FrameEncoder((SCALE,) * AXES, sequence=0).encode_many(x, 64)]
    data = bytearray(frames[0])
    size = len(data) // 10
    data[3 * size + 40] ^= 0xFF  # payload byte of frame 3
    data[5 * size + 6] ^= 0x01  # sample count of frame 5: claims a longer frame
    dec = FrameDecoder(AXES)
    out = dec.feed(bytes(data))
    c = dec.counters()
    assert c["crc_errors"] == 2 and c["frames_ok"] == 8
    expected = np.concatenate([x[:192], x[256:320], x[384:]])
    np.testing.assert_array_equal(out, expected)
    # The damaged frames show up as a gap in the sequence numbers, too.
    assert c["seq_gaps"] == 2 and c["frames_lost"] == 2


def test_garbage_and_false_sync_words_are_skipped():
    enc = FrameEncoder((SCALE,) * AXES)
    x = _signal(128)
    noise = b"\x00\xa5\x5a\x07\xff" + bytes(range(50)) + b"\xa5"  # a sync word with a bad header
    dec = FrameDecoder(AXES)
    out = dec.feed(noise + enc.encode(x[:64]) + b"junk" + enc.encode(x[64:]))
    np.testing.assert_array_equal(out, x)
    assert dec.bad_headers >= 1 and dec.bytes_skipped > 50 and dec.crc_errors == 0


def test_sequence_gaps_and_wraparound():
    enc = FrameEncoder((SCALE,) * AXES, sequence=SEQ_MOD - 2)
    frames = [enc.encode(_signal(8, i)) for i in range(8)]
    dec = FrameDecoder(AXES)
    dec.feed(b"".join(frames[:4]))  # ..., 2^32-1, 0, 1: wrapping is not a gap
    assert dec.seq_gaps == 0
    dec.feed(frames[6] + frames[7])  # 4 and 5 never arrived
    assert (dec.seq_gaps, dec.frames_lost) == (1, 2)


def test_frames_with_another_channel_count_are_refused():
    dec = FrameDecoder(AXES)
    out = dec.feed(FrameEncoder((SCALE,) * 4).encode(np.zeros((8, 4))))
    assert out.shape == (0, AXES) and dec.wrong_channels == 1


def test_real_pty_3200_hz_three_axes_no_sample_lost_then_corruption_resyncs():
    """A paced sender (64-sample frames, 50 per second) on a pty master; the agent's source on
    the slave. 3 s clean: every sample arrives in order. Then bytes are corrupted mid-stream:
    detected, counted, and decoding resumes with the next frame."""
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    seconds, per_frame = 3.0, 64
    x = _signal(int(RATE * seconds), seed=7)
    enc = FrameEncoder((SCALE,) * AXES)
    frames = [enc.encode(x[i:i + per_frame]) for i in range(0, len(x), per_frame)]
    bad = len(frames) // 2
    damaged = bytearray(frames[bad])
    damaged[30] ^= 0x55
    done = threading.Event()

    def sender(frames_to_send):
        t0 = time.monotonic()
        for k, frame in enumerate(frames_to_send):
            time.sleep(max(0.0, t0 + k * per_frame / RATE - time.monotonic()))
            os.write(master, frame)
        done.set()

    source = SerialFramesSource("m", port, 230400, ("ax", "ay", "az"))
    try:
        assert source.read() is None  # opens the port before the sender starts
        threading.Thread(target=sender, args=(frames,), daemon=True).start()
        got = _drain(source, done)
        assert source.decoder.counters()["crc_errors"] == 0
        assert source.decoder.seq_gaps == 0
        np.testing.assert_array_equal(got, x)  # nothing lost, nothing reordered

        done.clear()
        source.decoder.reset()  # the sender starts over at sequence 0: not a gap
        stream = frames[:bad] + [bytes(damaged), b"\xa5\x5a\x01garbage"] + frames[bad + 1:]
        threading.Thread(target=sender, args=(stream[:bad + 40],), daemon=True).start()
        got = _drain(source, done)
        c = source.decoder.counters()
        assert c["crc_errors"] == 1 and c["seq_gaps"] == 1 and c["frames_lost"] == 1
        expected = np.concatenate([x[: bad * per_frame], x[(bad + 1) * per_frame:(bad + 39) * per_frame]])
        np.testing.assert_array_equal(got, expected)
    finally:
        source.close()
        os.close(master)
        os.close(slave)


def _drain(source, done: threading.Event) -> np.ndarray:
    blocks = []
    quiet = 0
    while quiet < 3:
        frame = source.read()
        if frame is not None:
            blocks.append(frame.samples)
            quiet = 0
        elif done.is_set():
            quiet += 1
    return np.concatenate(blocks)
