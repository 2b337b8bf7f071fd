"""ISO 10816-3 severity zones: a physics-based check beside the learned model.

The learned model needs a baseline before it may speak; ISO 10816-3 (now 20816-3) needs none:
broadband RMS velocity (10-1000 Hz) on the bearing housing above fixed boundaries is bad for
any machine of the class. Zones: A (new machine) < B (unrestricted operation) < C (restricted:
plan maintenance) < D (damage likely). Zone C raises a `warning`, zone D an `alarm`, both with
`kind="iso10816"`, from the very first feature vector.

Default boundaries: group 2 (15-300 kW), rigid foundation: 1.4 / 2.8 / 4.5 mm/s. Other classes
(ISO 10816-3 table A.1): group 2 flexible 2.3/4.5/7.1, group 1 rigid 2.3/4.5/7.1, group 1
flexible 3.5/7.1/11.0 mm/s.

The worst axis counts (every feature ending in `velocity_rms_mm_s`). A level is entered after
`debounce_n` consecutive vectors at or above its boundary and left only below
boundary * (1 - hysteresis), so a machine hovering at 2.8 mm/s does not chatter.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.records import Alert, FeatureVector

ZONES = "ABCD"
VELOCITY_SUFFIX = "velocity_rms_mm_s"
# ISO 10816-3 table A.1 zone boundaries (A/B, B/C, C/D), RMS velocity in mm/s
CLASSES = {
    "group1-rigid": (2.3, 4.5, 7.1),
    "group1-flexible": (3.5, 7.1, 11.0),
    "group2-rigid": (1.4, 2.8, 4.5),
    "group2-flexible": (2.3, 4.5, 7.1),
}
_LEVEL = {0: "clear", 1: "clear", 2: "warning", 3: "alarm"}  # zone index -> alert level


@dataclass(frozen=True, slots=True)
class IsoConfig:
    """The ISO 10816-3 zone check of one sensor: zone boundaries in mm/s (A/B, B/C, C/D), debounce
    in readings and hysteresis as a fraction of a boundary (from the sensor's `iso10816:` section)."""

    enabled: bool = True
    machine_class: str = "group2-rigid"  # a label carried into model/reason
    boundaries: tuple[float, float, float] = (1.4, 2.8, 4.5)  # A/B, B/C, C/D in mm/s
    debounce_n: int = 2
    hysteresis: float = 0.1  # fraction of the boundary

    def __post_init__(self) -> None:
        a, b, c = self.boundaries
        if not 0 < a < b < c:
            raise ValueError("ISO 10816 boundaries must satisfy 0 < A/B < B/C < C/D")


def zone(velocity: float, boundaries: tuple[float, float, float]) -> str:
    """The ISO zone letter of an RMS velocity in mm/s.

    >>> [zone(v, (1.4, 2.8, 4.5)) for v in (0.5, 1.4, 2.79, 2.8, 4.5, 11.0)]
    ['A', 'B', 'B', 'C', 'D', 'D']
    """
    return ZONES[sum(velocity >= b for b in boundaries)]


class IsoZoneCheck:
    """Per-sensor ISO 10816-3 zone state machine; `update(vector)` -> Alert on a level change.

    >>> check = IsoZoneCheck(IsoConfig(debounce_n=2), device="gw", sensor="pump1")
    >>> fv = lambda t, v: FeatureVector("pump1", float(t), {"z.velocity_rms_mm_s": v})
    >>> events = [check.update(fv(t, v)) for t, v in enumerate([1.0, 3.0, 3.2, 5.0, 5.1, 2.6, 2.4, 2.3])]
    >>> [(e.ts, e.level) for e in events if e]
    [(2.0, 'warning'), (4.0, 'alarm'), (5.0, 'warning'), (6.0, 'clear')]
    >>> events[2].reason[0][0]
    'z.velocity_rms_mm_s in ISO 10816-3 zone C (group2-rigid: C from 2.8 mm/s)'
    """

    def __init__(self, cfg: IsoConfig, *, device: str, sensor: str) -> None:
        self.cfg = cfg
        self.device = device
        self.sensor = sensor
        self.level = 0  # 0 clear, 2 warning (zone C), 3 alarm (zone D)
        self._run = 0  # consecutive vectors asking for a higher level
        self._down_run = 0
        self.last_zone: str | None = None
        self.last_velocity: float | None = None

    @property
    def model(self) -> str:
        return f"iso10816-3@{self.cfg.machine_class}"

    def zone_of(self, vector: FeatureVector) -> str | None:
        """The zone of this vector's worst velocity, or None (check off, no velocity feature).
        Per vector, no debounce: what decides whether a window may enter a learned baseline."""
        velocities = [v for k, v in vector.values.items() if k.endswith(VELOCITY_SUFFIX) and v == v]
        if not self.cfg.enabled or not velocities:
            return None
        return zone(max(velocities), self.cfg.boundaries)

    def update(self, vector: FeatureVector) -> Alert | None:
        if not self.cfg.enabled:
            return None
        velocities = {k: v for k, v in vector.values.items() if k.endswith(VELOCITY_SUFFIX) and v == v}
        if not velocities:
            return None
        feature, v = max(velocities.items(), key=lambda kv: kv[1])
        self.last_velocity = v
        self.last_zone = zone(v, self.cfg.boundaries)
        target = max(ZONES.index(self.last_zone), 1)  # zones A and B are both "clear"
        if target > max(self.level, 1):
            self._run += 1
            self._down_run = 0
            if self._run >= self.cfg.debounce_n:
                return self._change(target, vector.ts, feature, v)
            return None
        self._run = 0
        if self.level >= 2:
            # Leave a level only clearly below its entry boundary (hysteresis); land on the
            # highest level whose boundary the velocity still holds, with the same margin.
            margin = 1 - self.cfg.hysteresis
            lower = next((lv for lv in range(self.level, 1, -1)
                          if v >= self.cfg.boundaries[lv - 1] * margin), 0)
            if lower < self.level:
                return self._change(lower, vector.ts, feature, v)
        return None

    def _change(self, level: int, ts: float, feature: str, v: float) -> Alert:
        self.level = level
        self._run = 0
        b = self.cfg.boundaries
        z = self.last_zone
        if level >= 2:
            lo = b[level - 1]
            text = f"{feature} in ISO 10816-3 zone {ZONES[level]} ({self.cfg.machine_class}: {ZONES[level]} from {lo:g} mm/s)"
            threshold = lo
        else:
            text = f"{feature} back in ISO 10816-3 zone {z} ({self.cfg.machine_class}: C from {b[1]:g} mm/s)"
            threshold = b[1]
        return Alert(
            ts=ts, device=self.device, sensor=self.sensor, level=_LEVEL[level],
            score=min(1.0, v / b[2]), threshold=threshold, model=self.model,
            reason=((text, v, 1.0),), kind="iso10816",
        )

    def state(self) -> dict:
        return {"zone": self.last_zone, "velocity_rms_mm_s": self.last_velocity, "level": _LEVEL[self.level]}


def from_sensor_config(sensor_cfg, device: str) -> IsoZoneCheck:
    """The check a sensor's `iso10816:` section asks for."""
    s = sensor_cfg.iso10816
    cfg = IsoConfig(s.enabled, s.machine_class, s.effective_boundaries(), s.debounce_n, s.hysteresis)
    return IsoZoneCheck(cfg, device=device, sensor=sensor_cfg.name)
