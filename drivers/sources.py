"""Sources: a driver's output as Frames. One per configured sensor, chosen by `protocol`.

Contract (Telegraf's `Gather`, in our terms): `read()` blocks for at most about
`max_wait` seconds and returns a Frame of the samples that arrived, or None when nothing
did; it never raises on sensor trouble (a lost port is retried inside the transport), and
`online` tells whether the sensor is currently delivering. `close()` releases the port.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from drivers.base import Frame

RECONNECT_MAX_S = 5.0


class Source(Protocol):
    sensor: str
    channels: tuple[str, ...]

    @property
    def online(self) -> bool: ...

    def read(self) -> Frame | None: ...

    def counters(self) -> dict: ...

    def input_errors(self) -> dict: ...

    def close(self) -> None: ...


class SerialStreamSource:
    """A byte-stream protocol over a serial port or pyserial URL: the transport's blocks go
    through a decoder (`feed(bytes) -> rows`, `reset()`, `counters()`, `input_errors()`)."""

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


class SerialLinesSource(SerialStreamSource):
    """`protocol: lines`: one ASCII line of comma-separated values per sample."""

    def __init__(self, sensor: str, port: str, baudrate: int, channels: tuple[str, ...], log=None) -> None:
        from drivers.lines import LinesParser

        super().__init__(sensor, port, baudrate, channels, LinesParser(len(channels)), log=log)


class SimSource:
    """`protocol: sim`: the simulated machine in-process, paced by the wall clock.

    Uses the same physics as `pdm-agent simulate`, so a demo without hardware exercises
    every stage after the serial line exactly as a real sensor would.
    """

    def __init__(
        self, sensor: str, rate: float, channels: tuple[str, ...], *, rpm: float, fault: str | None,
        fault_at: float, seed: int, block_s: float = 0.05,
    ) -> None:
        from drivers.simulator import CHANNELS as sim_channels, Machine

        self.sensor = sensor
        self.channels = tuple(channels)
        self._machine = Machine(rate=rate, rpm=rpm, seed=seed, fault=fault, fault_at=fault_at)
        self._rate = float(rate)
        self._block_s = block_s
        self._start = time.monotonic()
        self._t0_wall = time.time()
        self._sent = 0
        missing = [c for c in self.channels if c not in sim_channels]
        if missing:
            raise ValueError(f"the simulator has channels {list(sim_channels)}, not {missing}")
        self._columns = [sim_channels.index(c) for c in self.channels]

    @property
    def online(self) -> bool:
        return True

    def read(self) -> Frame | None:
        due = int((time.monotonic() - self._start) * self._rate) - self._sent
        if due < self._rate * self._block_s:
            time.sleep(self._block_s)
            due = int((time.monotonic() - self._start) * self._rate) - self._sent
        if due <= 0:
            return None
        block = self._machine.generate(due)[:, self._columns]
        self._sent += due
        return Frame(self.sensor, self._t0_wall + self._sent / self._rate, self.channels, np.ascontiguousarray(block))

    def counters(self) -> dict:
        return {"samples": self._sent}

    def input_errors(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def open_source(sensor_cfg, log=None) -> Source:
    """Build the source a sensor's config asks for."""
    proto = sensor_cfg.protocol
    channels = tuple(sensor_cfg.channels)
    if proto == "sim":
        sim = sensor_cfg.simulator
        return SimSource(
            sensor_cfg.name, sensor_cfg.sample_rate, channels,
            rpm=sim.rpm, fault=sim.fault, fault_at=sim.fault_at, seed=sim.seed,
        )
    if proto == "lines":
        return SerialLinesSource(sensor_cfg.name, sensor_cfg.port, sensor_cfg.baudrate, channels, log=log)
    if proto == "frames":
        from drivers.frames import SerialFramesSource

        return SerialFramesSource(sensor_cfg.name, sensor_cfg.port, sensor_cfg.baudrate, channels, log=log)
    if proto == "modbus":
        from drivers.modbus import open_modbus

        return open_modbus(sensor_cfg, log=log)
    raise ValueError(f"unknown protocol {proto!r}")
