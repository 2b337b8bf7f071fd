"""A test-only protocol, `loopback`: the whole of a new driver in one file (tests/test_sources.py
registers it and runs it through the same contract as the shipped protocols).

Each read writes one line ``<counter>,<counter*0.5>`` into pyserial's ``loop://`` port and reads it
back: a VALUES source that needs no device, so the registry and the contract can be shown without
hardware. The config object needs `name` and `channels` (two value names).
"""

from __future__ import annotations

import time

import serial

from drivers.base import VALUES, Driver, FeatureVector, register

PROTOCOL = "loopback"


class LoopbackSource:
    """Echoes one line per read through `loop://` and returns it as named values."""

    kind = VALUES

    def __init__(self, sensor: str, channels: tuple[str, ...]) -> None:
        self.sensor = sensor
        self.channels = tuple(channels)
        self._port = serial.serial_for_url("loop://", timeout=0.2)
        self._n = 0
        self._bad = 0

    @property
    def online(self) -> bool:
        return self._port.is_open

    def read(self) -> FeatureVector | None:
        if not self._port.is_open:
            return None
        self._n += 1
        self._port.write(f"{self._n},{self._n * 0.5}\n".encode())
        line = self._port.readline().decode("ascii", "replace").strip()
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            self._bad += 1
            return None
        return FeatureVector(self.sensor, time.time(), dict(zip(self.channels, values)))

    def counters(self) -> dict:
        return {"lines": self._n}

    def input_errors(self) -> dict:
        return {"not_a_number": self._bad}

    def close(self) -> None:
        self._port.close()


def install() -> None:
    register(Driver(PROTOCOL, VALUES, lambda cfg, log: LoopbackSource(cfg.name, tuple(cfg.channels)),
                    needs_port=False, cadence_s=lambda cfg: 1.0))
