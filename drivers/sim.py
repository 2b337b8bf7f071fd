"""`protocol: sim`: the simulated machine (drivers/simulator.py) as an in-process source."""

from __future__ import annotations

import time

from typing import Literal, Optional

import numpy as np
from pydantic import Field

from drivers.base import WAVEFORM, Driver, Frame, register
from drivers.config import Section


class SimulatorConfig(Section):
    """The simulated machine of a `sim` sensor: shaft speed in rpm, an optional fault and when it starts."""

    rpm: float = Field(1780, gt=0, description="shaft speed")
    fault: Optional[Literal["outer-race", "inner-race", "imbalance", "overheat"]] = None
    fault_at: float = Field(120.0, ge=0, description="seconds after start when the fault begins")
    seed: int = 0


class SimSettings(Section):
    """The keys only a `sim` sensor has."""

    protocol: Literal["sim"] = Field("sim", validate_default=True)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)


class SimSource:
    """`protocol: sim`: the simulated machine in-process, paced by the wall clock.

    Uses the same physics as `pdm-agent simulate`, so a demo without hardware exercises
    every stage after the serial line exactly as a real sensor would.
    """

    kind = WAVEFORM

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


def _open(sensor_cfg, log=None) -> SimSource:
    sim = sensor_cfg.simulator
    return SimSource(sensor_cfg.name, sensor_cfg.sample_rate, tuple(sensor_cfg.channels),
                     rpm=sim.rpm, fault=sim.fault, fault_at=sim.fault_at, seed=sim.seed)


register(Driver("sim", WAVEFORM, _open, settings=SimSettings, needs_port=False))
