"""The source shared by the byte-stream protocols (lines, frames): a serial port or pyserial URL
read in blocks, decoded into Frames. The Source contract and the protocol registry are in
drivers/base.py; each protocol's module registers itself there.
"""

from __future__ import annotations

import time

from drivers.base import WAVEFORM, Frame, Source  # noqa: F401 (Source re-exported)

RECONNECT_MAX_S = 5.0


class SerialStreamSource:
    """A byte-stream protocol over a serial port or pyserial URL: the transport's blocks go
    through a decoder (`feed(bytes) -> rows`, `reset()`, `counters()`, `input_errors()`)."""

    kind = WAVEFORM

    def __init__(self, sensor: str, port: str, baudrate: int, channels: tuple[str, ...], decoder, log=None) -> None:
        from drivers.transport import SerialTransport

        self.sensor = sensor
        self.channels = tuple(channels)
        # Re-opening a device node is cheap, and a replugged sensor should be back within
        # seconds: cap the back-off well below the transport's generic 30 s.
        self._transport = SerialTransport(port, baudrate=baudrate, backoff_max=RECONNECT_MAX_S, log=log)
        self.decoder = decoder
        self._reconnects = 0

    @property
    def online(self) -> bool:
        return self._transport.online

    def read(self) -> Frame | None:
        data = self._transport.read()
        if self._transport.reconnects != self._reconnects:
            # A partial line or frame from before the unplug must not be glued to the new data.
            self._reconnects = self._transport.reconnects
            self.decoder.reset()
        if not data:
            return None
        rows = self.decoder.feed(data)
        if not len(rows):
            return None
        return Frame(self.sensor, time.time(), self.channels, rows)

    def input_errors(self) -> dict:
        """Counts of input dropped as invalid, by kind (for rate-limited logging)."""
        return self.decoder.input_errors()

    def counters(self) -> dict:
        return {
            **self.decoder.counters(),
            "reconnects": self._transport.reconnects,
            "bytes_read": self._transport.bytes_read,
        }

    def close(self) -> None:
        self._transport.close()
