"""Per-sensor aggregates on a clock: mean/min/max of every feature (and the score) per interval.

`features` (fnmatch patterns, config ``aggregates.features``) trims what is published: an
aggregate of many sensors' features x mean/min/max can outgrow a small broker's packet limit.
The score is always kept.

Intervals are aligned to the wall clock (multiples of `interval` since the epoch), so aggregates
from several gateways line up, and `ts` is the end of the interval. Once a sensor's clock has
started (at its first window), **every** interval is published, one after the other, `interval`
seconds apart:

- an interval in which no window ended (the sensor was silent, or the interval is shorter than the
  window hop) is published with `count: 0` and no features, so a subscriber can tell "nothing
  measured" from "message lost";
- an interval is published when a window of a later interval arrives, or `GRACE_S` after its end
  (`flush(now)`), so a window still on its way from the reader is counted where it belongs;
- a window that reaches the aggregator after its interval was published (a backlog) is counted in
  the open interval rather than lost;
- after a clock jump of more than `MAX_EMPTY` intervals (a suspended board, a stepped clock) the
  clock restarts at the current interval instead of publishing a flood of empty ones.
"""

from __future__ import annotations

import math
from fnmatch import fnmatchcase as fnmatch

import numpy as np

from agent.records import Aggregate, FeatureVector

GRACE_S = 1.0  # seconds after an interval's end before `flush` publishes it
MAX_EMPTY = 100  # empty intervals published at most for one gap; beyond, the clock restarts


class Aggregator:
    """Accumulates feature vectors into interval aggregates.

    `add(vector, score)` and `flush(now)` return the aggregates that are complete, oldest first
    (usually none or one).

    >>> agg = Aggregator("gw", "pump1", interval=10)
    >>> agg.flush(25.0)  # no window yet: no clock
    []
    >>> agg.add(FeatureVector("pump1", 1.0, {"ax.rms_g": 1.0}), 0.2)
    []
    >>> agg.add(FeatureVector("pump1", 5.0, {"ax.rms_g": 3.0}), 0.4)
    []
    >>> [a] = agg.add(FeatureVector("pump1", 12.0, {"ax.rms_g": 9.0}), 0.1)
    >>> a.ts, a.count, a.features["ax.rms_g"], a.features["score"]["max"]
    (10.0, 2, {'mean': 2.0, 'min': 1.0, 'max': 3.0}, 0.4)
    >>> [(a.ts, a.count) for a in agg.add(FeatureVector("pump1", 41.0, {"ax.rms_g": 2.0}), 0.1)]
    [(20.0, 1), (30.0, 0), (40.0, 0)]
    >>> agg.flush(50.5), [(a.ts, a.count, a.features) for a in agg.flush(51.0)]
    ([], [(50.0, 1, {'ax.rms_g': {'mean': 2.0, 'min': 2.0, 'max': 2.0}, 'score': {'mean': 0.1, 'min': 0.1, 'max': 0.1}})])
    >>> [(a.ts, a.count, a.features) for a in agg.flush(61.0)]
    [(60.0, 0, {})]
    """

    def __init__(self, device: str, sensor: str, interval: float) -> None:
        self.device = device
        self.sensor = sensor
        self.interval = float(interval)
        self._end: float | None = None  # end of the open interval; None until the clock starts
        self._names: list[str] = []
        self._rows: list[list[float]] = []
        self.features: tuple[str, ...] | None = None  # fnmatch patterns to publish; None = all
        self.privacy = None  # agent/privacy.py Privatizer when aggregates.privacy is set

    def _interval_end(self, ts: float) -> float:
        return (math.floor(ts / self.interval) + 1) * self.interval

    def _advance_to(self, end: float) -> list[Aggregate]:
        """Publish every interval before the one ending at `end`, then open that one."""
        if self._end is None or end <= self._end:
            if self._end is None:
                self._end = end
            return []
        gap = round((end - self._end) / self.interval)
        out = [self._close()]
        if gap - 1 > MAX_EMPTY:
            self._end = end  # a clock jump: restart rather than flood
            return out
        while self._end < end:
            self._end += self.interval
            if self._end < end:
                out.append(self._close())
        self._end = end
        return out

    def add(self, vector: FeatureVector, score: float | None) -> list[Aggregate]:
        out = self._advance_to(self._interval_end(vector.ts))
        if not self._names:
            self._names = [*vector.values, "score"]
        if list(vector.values) == self._names[:-1]:
            self._rows.append([*vector.values.values(), math.nan if score is None else score])
        return out

    def flush(self, now: float) -> list[Aggregate]:
        """Publish the intervals that ended at least `GRACE_S` before `now` (wall clock).
        Nothing before the first window: a sensor that never delivered has no clock yet (its
        `sensor_offline` alarm says why), and a start mid-interval is not an empty interval."""
        if self._end is None:
            return []
        return self._advance_to(self._interval_end(now - GRACE_S))

    def _close(self) -> Aggregate:
        rows, end = self._rows, self._end
        self._rows = []
        features, privacy = {}, None
        if self.privacy is not None:  # clipped and noised (agent/privacy.py)
            features, privacy = self.privacy.release(self.sensor, self._names,
                                                     np.asarray(rows, dtype=float) if rows else None, self._keep)
        elif rows:
            data = np.asarray(rows, dtype=float)
            for i, name in enumerate(self._names):
                if not self._keep(name):
                    continue
                col = data[:, i][np.isfinite(data[:, i])]
                if col.size:
                    features[name] = {"mean": float(col.mean()), "min": float(col.min()), "max": float(col.max())}
        return Aggregate(
            ts=end, device=self.device, sensor=self.sensor, interval_s=self.interval,
            count=len(rows), features=features, privacy=privacy,
        )

    def _keep(self, name: str) -> bool:
        return self.features is None or name == "score" or any(fnmatch(name, p) for p in self.features)
