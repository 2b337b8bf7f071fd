"""Is the sensor itself healthy? Offline, stuck, out of physical range: for every protocol.

A broken sensor looks like a very quiet machine (a dead accelerometer reads 0 g) or a very sick
one (a loose connector reads full scale); neither should be mistaken for the machine's state.
This module watches the feature vectors a sensor produces and reports, for the status topic:

- `state`: ok | offline (no data for `offline_after_s`, or the source says so) | stuck (some
  value has not changed for `stuck_after_s`) | out_of_range (some value outside what the sensor
  can physically report);
- which features are stuck or out of range, and the source's own counters (CRC errors,
  timeouts, sequence gaps ...), passed through.

Physical ranges come from the register map (Modbus presets) or, for waveform features, from the
table below (what MEMS accelerometers and housing thermometers can report at all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# feature suffix -> (min, max) that a working sensor can report
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "rms_g": (0.0, 200.0),
    "peak_g": (0.0, 500.0),
    "velocity_rms_mm_s": (0.0, 1000.0),
    "mean_c": (-60.0, 200.0),
}


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Offline and stuck limits in seconds (from the sensor's `health:` section and its cadence)."""

    offline_after_s: float = 10.0
    stuck_after_s: float = 600.0


class SensorHealth:
    """Tracks one sensor's feature vectors; `report(online)` is the status-topic entry.

    >>> h = SensorHealth(HealthConfig(offline_after_s=5, stuck_after_s=10), ranges={"temp.mean_c": (-40, 85)})
    >>> h.observe({"z.rms_g": 0.1, "temp.mean_c": 30.0}, now=0.0)
    >>> h.report(online=True, now=1.0)["state"]
    'ok'
    >>> h.observe({"z.rms_g": 0.1, "temp.mean_c": 99.0}, now=11.0)
    >>> r = h.report(online=True, now=11.0); r["state"], r["stuck"], r["out_of_range"]
    ('out_of_range', ['z.rms_g'], ['temp.mean_c'])
    >>> h.report(online=True, now=20.0)["state"]
    'offline'
    """

    def __init__(self, cfg: HealthConfig = HealthConfig(), ranges: dict[str, tuple[float, float]] | None = None) -> None:
        self.cfg = cfg
        self.ranges = dict(ranges or {})
        self._last: dict[str, float] = {}
        self._since: dict[str, float] = {}  # when each value last changed
        self._last_data: float | None = None
        self._out: list[str] = []
        self.out_of_range_count = 0
        self.started = time.monotonic()  # durations: a wall-clock step must not make a sensor stuck or offline

    def observe(self, values: dict[str, float], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._last_data = now
        out = []
        for name, v in values.items():
            if self._last.get(name) != v:
                self._last[name] = v
                self._since[name] = now
            lo, hi = self._range(name)
            if not lo <= v <= hi:  # NaN fails too: a sensor that reports NaN is broken
                out.append(name)
        if out:
            self.out_of_range_count += 1
        self._out = out

    def _range(self, name: str) -> tuple[float, float]:
        if name in self.ranges:
            return self.ranges[name]
        suffix = name.split(".", 1)[-1]
        return DEFAULT_RANGES.get(suffix, (float("-inf"), float("inf")))

    def report(self, online: bool, now: float | None = None, counters: dict | None = None) -> dict:
        now = time.monotonic() if now is None else now
        last = self._last_data if self._last_data is not None else self.started
        silent = now - last
        stuck = sorted(n for n, t in self._since.items() if now - t >= self.cfg.stuck_after_s)
        if not online or silent > self.cfg.offline_after_s:
            state = "offline"
        elif self._out:
            state = "out_of_range"
        elif stuck:
            state = "stuck"
        else:
            state = "ok"
        return {
            "state": state,
            "last_data_s_ago": None if self._last_data is None else round(silent, 1),
            "stuck": stuck,
            "out_of_range": list(self._out),
            "out_of_range_count": self.out_of_range_count,
            **({"counters": counters} if counters else {}),
        }


def from_sensor_config(sensor_cfg) -> SensorHealth:
    """Health tracking for a sensor: its `health:` section, ranges from its driver (a Modbus map) if any."""
    from agent.baseline import cadence_s
    from drivers.base import driver_for

    h = sensor_cfg.health
    driver = driver_for(sensor_cfg.protocol)
    cadence = cadence_s(sensor_cfg)
    offline = h.offline_after_s if h.offline_after_s is not None else max(10.0, 3 * cadence)
    ranges = driver.value_ranges(sensor_cfg)
    return SensorHealth(HealthConfig(offline, h.stuck_after_s), ranges)
