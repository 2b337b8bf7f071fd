"""Online detector for slow univariate streams: sudden changes and slow drifts (EWMA + CUSUM).

A machine temperature, a bearing-housing RMS polled once a minute, a motor current: one value per
record, learned online from the first record (replay `--train-rows 0`, the daemon's way). Each
channel is watched by three statistics, in baseline standard deviations:

- **innovation**: the new value against its short-term level (an EWMA over `smooth` records),
  relative to the typical record-to-record change: a step, a spike, a stuck-then-jumping sensor;
- **level**: that smoothed level against the learned healthy mean, relative to the healthy spread:
  a value outside the range seen while healthy;
- **CUSUM**: a two-sided cumulative sum of the level's excess beyond `slack` standard deviations:
  a drift that keeps the level just outside the healthy range adds up to an alert within tens
  of records, long before the level alone is far out (capped, so it recovers after an excursion).

The score is the largest of innovation², level² and `2 * cusum` (the factor puts a CUSUM of 5, a
classic decision interval, at the same height as a 3.2-sigma single value), maximised over channels.
The short-term level and the CUSUM are input context: `observe(x)` (called by models/streaming.py
after every record) advances them; `score` and `learn` only read them. The learned part (mean and
spread of the values, spread of the innovations) adapts slowly through `half_life`, and the
streaming model learns only from records below the warning level, so a drift never becomes "healthy".

Examples
--------
>>> rng = np.random.default_rng(0)
>>> det = TrendDetector()
>>> for v in 40 + rng.normal(0, 0.2, 500):
...     det.learn({"temp": v}); det.observe({"temp": v})
>>> det.score({"temp": 40.1}) < 5 < det.score({"temp": 43.0})
True
"""

from __future__ import annotations

import math

import numpy as np

from models.base import DetectorBase
from models.gaussian import ew_weight

_FLOOR = 1e-9
_CUSUM_CAP = 20.0  # 4x the classic decision interval of 5: plenty for an alarm, quick to recover


class TrendDetector(DetectorBase):
    """EWMA level + innovation + two-sided CUSUM per channel (see module docstring).

    Parameters
    ----------
    smooth
        Records in the short-term level's EWMA (its half-life is smooth / 2 records).
    slack
        CUSUM allowance, in healthy standard deviations of the level (2.0: only excursions beyond
        the healthy range accumulate, so daily cycles and autocorrelated noise do not).
    half_life
        In learned records; None = equal weights. Set by the streaming model from `adapt_half_life_s`.
    """

    name = "trend"
    version = "1"
    calibration = None  # fitted on the baseline by models/streaming.py
    novelty = False
    adaptive = True
    contextual = True  # see models/base.py

    def __init__(self, smooth: int = 10, slack: float = 2.0, half_life: float | None = None) -> None:
        if int(smooth) < 1:
            raise ValueError(f"smooth must be >= 1 record, got {smooth}")
        self.smooth = int(smooth)
        self.slack = slack
        self.half_life = half_life
        self._n = 0
        self._stats: dict[str, list[float]] = {}  # channel -> [mean, var, innovation var]
        self._ctx: dict[str, list[float]] = {}  # channel -> [level, cusum_up, cusum_down]

    @property
    def _alpha(self) -> float:
        return 1.0 - 2.0 ** (-2.0 / self.smooth) if self.smooth > 1 else 1.0

    def _terms(self, key: str, v: float) -> tuple[float, float, float, list[float]]:
        """(innovation², level², 2*cusum, next context) of value v on channel key."""
        mean, var, ivar = self._stats.get(key, (v, 0.0, 0.0))
        level, up, down = self._ctx.get(key, (v, 0.0, 0.0))
        sd = math.sqrt(max(var, _FLOOR + 1e-6 * mean * mean))
        isd = math.sqrt(max(ivar, _FLOOR + 1e-6 * mean * mean))
        zi = (v - level) / isd
        level = level + self._alpha * (v - level)
        zl = (level - mean) / sd
        # Capped: after a long excursion the sum must come back within ~2 * _CUSUM_CAP records.
        up = min(max(0.0, up + zl - self.slack), _CUSUM_CAP)
        down = min(max(0.0, down - zl - self.slack), _CUSUM_CAP)
        return min(zi * zi, 1e12), min(zl * zl, 1e12), min(2.0 * max(up, down), 1e12), [level, up, down]

    def observe(self, x: dict[str, float]) -> None:
        for k, v in x.items():
            if math.isfinite(v):
                self._ctx[k] = self._terms(k, float(v))[3]

    def learn(self, x: dict[str, float]) -> None:
        self._n += 1
        w = ew_weight(self._n, self.half_life)
        for k, v in x.items():
            v = float(v)
            if not math.isfinite(v):
                continue
            if k not in self._stats:
                self._stats[k] = [v, 0.0, 0.0]
            mean, var, ivar = self._stats[k]
            level = self._ctx.get(k, (v,))[0]
            d = v - mean
            mean += w * d
            var = (1.0 - w) * (var + w * d * d)
            ivar = (1.0 - w) * (ivar + w * (v - level) ** 2)
            self._stats[k] = [mean, var, ivar]

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        """Per channel, the largest of its three statistics (in squared standard deviations)."""
        if self._n < 2:
            return {k: 0.0 for k in x}
        out = {}
        for k, v in x.items():
            ok = k in self._stats and v is not None and math.isfinite(v)
            out[k] = max(self._terms(k, float(v))[:3]) if ok else 0.0
        return out

    def score(self, x: dict[str, float]) -> float:
        return max(self.explain(x).values(), default=0.0)

    def state(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "params": {"smooth": self.smooth, "slack": self.slack, "half_life": self.half_life},
            "n": self._n,
            "stats": self._stats,
            "context": self._ctx,
        }

    @classmethod
    def from_state(cls, state: dict) -> "TrendDetector":
        det = cls(**state["params"])
        det._n = int(state["n"])
        det._stats = {k: [float(a) for a in v] for k, v in state["stats"].items()}
        det._ctx = {k: [float(a) for a in v] for k, v in state.get("context", {}).items()}
        return det
