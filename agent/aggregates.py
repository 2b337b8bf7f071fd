"""Per-sensor aggregates: mean/min/max of every feature (and the score) per interval.

`features` (fnmatch patterns, config ``aggregates.features``) trims what is published: an
aggregate of many sensors' features x mean/min/max can outgrow a small broker's packet limit.
The score is always kept. Intervals are aligned to the wall clock (multiples of `interval` since the epoch), so
aggregates from several gateways line up; `ts` is the end of the interval (SPEC section 5).
An interval is published when the first vector of a later interval arrives, or when
`flush(now)` finds it over (a sensor that went silent still gets its last interval out).
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase as fnmatch

import numpy as np

from agent.records import Aggregate, FeatureVector


class Aggregator:
    """Accumulates feature vectors into interval aggregates.

    >>> agg = Aggregator("gw", "pump1", interval=10)
    >>> agg.add(FeatureVector("pump1", 1.0, {"ax.rms_g": 1.0}), 0.2) is None
    True
    >>> agg.add(FeatureVector("pump1", 5.0, {"ax.rms_g": 3.0}), 0.4) is None
    True
    >>> a = agg.add(FeatureVector("pump1", 12.0, {"ax.rms_g": 9.0}), 0.1)
    >>> a.ts, a.count, a.features["ax.rms_g"], a.features["score"]["max"]
    (10.0, 2, {'mean': 2.0, 'min': 1.0, 'max': 3.0}, 0.4)
    """

    def __init__(self, device: str, sensor: str, interval: float) -> None:
        self.device = device
        self.sensor = sensor
        self.interval = float(interval)
        self._end: float | None = None
        self._names: list[str] = []
        self._rows: list[list[float]] = []
        self.features: tuple[str, ...] | None = None  # fnmatch patterns to publish; None = all

    def _interval_end(self, ts: float) -> float:
        return (math.floor(ts / self.interval) + 1) * self.interval

    def add(self, vector: FeatureVector, score: float | None) -> Aggregate | None:
        out = None
        end = self._interval_end(vector.ts)
        if self._end is not None and end != self._end:
            out = self._emit()
        if self._end is None:
            self._end = end
            self._names = [*vector.values, "score"]
        if list(vector.values) == self._names[:-1]:
            self._rows.append([*vector.values.values(), math.nan if score is None else score])
        return out

    def flush(self, now: float) -> Aggregate | None:
        if self._end is not None and now >= self._end:
            return self._emit()
        return None

    def _emit(self) -> Aggregate | None:
        rows, end = self._rows, self._end
        self._rows, self._end = [], None
        if not rows:
            return None
        data = np.asarray(rows, dtype=float)
        features = {}
        for i, name in enumerate(self._names):
            if self.features is not None and name != "score" and not any(fnmatch(name, p) for p in self.features):
                continue
            col = data[:, i][np.isfinite(data[:, i])]
            if col.size:
                features[name] = {"mean": float(col.mean()), "min": float(col.min()), "max": float(col.max())}
        return Aggregate(
            ts=end, device=self.device, sensor=self.sensor, interval_s=self.interval,
            count=len(rows), features=features,
        )
