"""`protocol: frames`: raw accelerometer samples in binary frames (format in docs/frames.md).

Text lines cost ~3x the bytes of binary and a parse per sample; a 3.2 kHz x 3-axis ADXL345
stream is 19.2 kB/s as int16, which fits 230400 baud. One frame on the wire, little-endian:

====== ======= =======================================================================
offset  size   field
====== ======= =======================================================================
0       2      sync word A5 5A
2       1      version (1)
3       1      sample format: 1 = int16, 2 = float32
4       1      channels C (1..16)
5       1      flags (0, reserved)
6       2      samples per channel N (uint16, 1..4096)
8       4      sequence number (uint32, +1 per frame, wraps)
12      4*C    scale per channel (float32): value = raw * scale
12+4C   N*C*s  samples, interleaved by sample: s0c0 s0c1 ... s1c0 ...
end-2   2      CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of bytes 2 .. end-2
====== ======= =======================================================================

The decoder finds frames by the sync word, checks the CRC, and after any damage resumes at the
next sync word after the damaged one (so a corrupted length never costs more than delay: the
bytes it claimed are searched again). Gaps in the sequence number count lost frames.

>>> enc = FrameEncoder(scales=(1 / 2048,) * 3)
>>> data = enc.encode(np.array([[2048, 0, -1024], [0, 1024, 2048]]) / 2048)
>>> len(data), data[:2].hex()
(38, 'a55a')
>>> dec = FrameDecoder(n_channels=3)
>>> dec.feed(data[:10]).shape, dec.feed(data[10:]).tolist()
((0, 3), [[1.0, 0.0, -0.5], [0.0, 0.5, 1.0]])
"""

from __future__ import annotations

import binascii
import struct
from typing import Literal

import numpy as np

from drivers.base import WAVEFORM, Driver, PtyServer, register
from drivers.config import Section
from pydantic import Field
from drivers.sources import SerialStreamSource

SYNC = b"\xa5\x5a"
VERSION = 1
FORMATS = {1: np.dtype("<i2"), 2: np.dtype("<f4")}  # sample format code -> wire dtype
FORMAT_CODES = {"int16": 1, "float32": 2}
MAX_CHANNELS = 16
MAX_SAMPLES = 4096
HEADER = struct.Struct("<2sBBBBHI")  # sync, version, format, channels, flags, n, sequence
CRC_INIT = 0xFFFF
SEQ_MOD = 2**32


def crc16(data: bytes | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).

    >>> hex(crc16(b"123456789"))  # the catalogue check value
    '0x29b1'
    """
    return binascii.crc_hqx(data, CRC_INIT)


class FrameEncoder:
    """Builds frames for a sender (the simulator; the reference for firmware authors).

    `scales` gives each channel's physical units per count (int16) and fixes the channel count;
    with `sample_format="float32"` the samples go out as floats and the scales as given (use 1.0).
    """

    def __init__(self, scales: tuple[float, ...], sample_format: str = "int16", sequence: int = 0) -> None:
        if not 1 <= len(scales) <= MAX_CHANNELS:
            raise ValueError(f"1..{MAX_CHANNELS} channels, got {len(scales)}")
        self.code = FORMAT_CODES[sample_format]
        self.dtype = FORMATS[self.code]
        self.scales = np.asarray(scales, dtype="<f4")
        self.sequence = sequence % SEQ_MOD

    def encode(self, block: np.ndarray) -> bytes:
        """One frame per call for up to MAX_SAMPLES rows of physical values, shape (n, C)."""
        block = np.asarray(block, dtype=float)
        n, c = block.shape
        if c != len(self.scales) or not 1 <= n <= MAX_SAMPLES:
            raise ValueError(f"block must be (1..{MAX_SAMPLES}, {len(self.scales)}), got {block.shape}")
        if self.code == 1:
            info = np.iinfo(np.int16)
            raw = np.clip(np.rint(block / self.scales), info.min, info.max).astype(self.dtype)
        else:
            raw = (block / self.scales).astype(self.dtype)
        body = HEADER.pack(SYNC, VERSION, self.code, c, 0, n, self.sequence)[2:]
        body += self.scales.tobytes() + raw.tobytes()
        self.sequence = (self.sequence + 1) % SEQ_MOD
        return SYNC + body + struct.pack("<H", crc16(body))

    def encode_many(self, block: np.ndarray, per_frame: int) -> bytes:
        """Split `block` into frames of `per_frame` samples (the last one may be shorter)."""
        return b"".join(self.encode(block[i:i + per_frame]) for i in range(0, len(block), per_frame))


class FrameDecoder:
    """Streaming decoder: `feed(bytes)` -> samples (k, n_channels) of every whole, valid frame.

    Frames whose channel count differs from `n_channels` are counted (`wrong_channels`) and
    dropped: the config and the firmware disagree, and guessing a mapping would mislabel axes.
    Counters (never reset, for the status topic): frames_ok, samples, crc_errors, bad_headers,
    wrong_channels, bytes_skipped (garbage between frames), seq_gaps (gap events), frames_lost.
    """

    def __init__(self, n_channels: int, max_payload: int = 16384) -> None:
        self.n_channels = n_channels
        self.max_payload = max_payload
        self._buf = bytearray()
        self._next_seq: int | None = None
        self.frames_ok = 0
        self.samples = 0
        self.crc_errors = 0
        self.bad_headers = 0
        self.wrong_channels = 0
        self.bytes_skipped = 0
        self.seq_gaps = 0
        self.frames_lost = 0
        self.last_sequence: int | None = None

    def reset(self) -> None:
        """Forget partial data and the expected sequence (after a reconnect: the sender may have restarted)."""
        self._buf.clear()
        self._next_seq = None

    def feed(self, data: bytes) -> np.ndarray:
        buf = self._buf
        buf += data
        blocks: list[np.ndarray] = []
        pos = 0
        end = len(buf)
        view = memoryview(buf)
        try:
            while True:
                start = buf.find(SYNC, pos)
                if start < 0:
                    # Keep a trailing A5: it may be the first half of the next sync word.
                    keep = 1 if end and buf[end - 1] == SYNC[0] else 0
                    self.bytes_skipped += end - pos - keep
                    pos = end - keep
                    break
                self.bytes_skipped += start - pos
                pos = start
                if end - pos < HEADER.size:
                    break
                _, version, code, c, _flags, n, seq = HEADER.unpack_from(buf, pos)
                dtype = FORMATS.get(code)
                payload = n * c * dtype.itemsize if dtype is not None else 0
                if version != VERSION or dtype is None or not 1 <= c <= MAX_CHANNELS \
                        or not 1 <= n <= MAX_SAMPLES or payload > self.max_payload:
                    self.bad_headers += 1
                    pos += 1  # not a frame start after all: search on from the next byte
                    continue
                size = HEADER.size + 4 * c + payload + 2
                if end - pos < size:
                    break
                (crc,) = struct.unpack_from("<H", buf, pos + size - 2)
                if crc16(view[pos + 2:pos + size - 2]) != crc:
                    self.crc_errors += 1
                    pos += 1
                    continue
                self._sequence(seq)
                if c != self.n_channels:
                    self.wrong_channels += 1
                else:
                    blocks.append(_samples(buf, pos, dtype, n, c))
                    self.frames_ok += 1
                    self.samples += n
                pos += size
        finally:
            view.release()
        del buf[:pos]
        if not blocks:
            return np.empty((0, self.n_channels))
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)

    def _sequence(self, seq: int) -> None:
        expected = self._next_seq
        if expected is not None and seq != expected:
            missed = (seq - expected) % SEQ_MOD
            self.seq_gaps += 1
            # A jump of more than half the range is a sender restart, not 2 billion lost frames.
            if missed < SEQ_MOD // 2:
                self.frames_lost += missed
        self._next_seq = (seq + 1) % SEQ_MOD
        self.last_sequence = seq

    def input_errors(self) -> dict:
        return {"crc_errors": self.crc_errors, "bad_headers": self.bad_headers,
                "wrong_channels": self.wrong_channels, "frames_lost": self.frames_lost}

    def counters(self) -> dict:
        return {
            "frames_ok": self.frames_ok, "samples": self.samples, "crc_errors": self.crc_errors,
            "bad_headers": self.bad_headers, "wrong_channels": self.wrong_channels,
            "bytes_skipped": self.bytes_skipped, "seq_gaps": self.seq_gaps, "frames_lost": self.frames_lost,
        }


ACCEL_SCALE = 1 / 2048  # g per count: +-16 g in int16, finer than an ADXL345's 3.9 mg full resolution
TEMP_SCALE = 0.01  # degC per count


def stream_encoder(channels: tuple[str, ...], per_frame: int = 64):
    """`block (n, C) -> [frame bytes, ...]` for the simulator: int16 frames of `per_frame` samples,
    with acceleration at ACCEL_SCALE and the simulator's temperature channels at TEMP_SCALE."""
    from drivers.simulator import TEMPERATURE_CHANNELS

    enc = FrameEncoder(tuple(TEMP_SCALE if c in TEMPERATURE_CHANNELS else ACCEL_SCALE for c in channels))
    per_frame = max(1, min(per_frame, MAX_SAMPLES))

    def encode(block: np.ndarray, _channels=None) -> list[bytes]:
        return [enc.encode(block[i:i + per_frame]) for i in range(0, len(block), per_frame)]

    return encode


def _samples(buf: bytearray, pos: int, dtype: np.dtype, n: int, c: int) -> np.ndarray:
    # A function of its own so the views into `buf` die on return: the buffer is resized next.
    scales = np.frombuffer(buf, "<f4", c, pos + HEADER.size).astype(float)
    raw = np.frombuffer(buf, dtype, n * c, pos + HEADER.size + 4 * c)
    return raw.reshape(n, c) * scales


class SerialFramesSource(SerialStreamSource):
    """`protocol: frames` over a serial port or pyserial URL (the Source contract of drivers/sources.py)."""

    def __init__(self, sensor: str, port: str, baudrate: int, channels: tuple[str, ...], log=None) -> None:
        super().__init__(sensor, port, baudrate, channels, FrameDecoder(len(channels)), log=log)


class FramesSettings(Section):
    """A `frames` sensor has no keys of its own beyond the serial port every sensor has."""

    protocol: Literal["frames"] = Field("frames", validate_default=True)


def _open(sensor_cfg, log=None) -> SerialFramesSource:
    return SerialFramesSource(sensor_cfg.name, sensor_cfg.port, sensor_cfg.baudrate, tuple(sensor_cfg.channels), log=log)


def _serve_pty(link: str, **kwargs) -> int:
    """The pty server of `simulate --protocol frames` (drivers/base.PtyServer): the machine's
    samples as int16 frames, one frame per block the server writes."""
    from drivers.pty_server import stream

    return stream(link, "frames", lambda channels, block_n: stream_encoder(channels, per_frame=block_n), **kwargs)


register(Driver("frames", WAVEFORM, _open, settings=FramesSettings, pty_server=PtyServer(_serve_pty)))
