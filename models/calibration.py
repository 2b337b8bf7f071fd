"""Score calibration: raw detector scores -> [0, 1], so that a threshold means the same on every machine.

Raw scores are model-specific and unbounded (a Mahalanobis distance, a tree mass). The calibrator
is learned from the raw scores of the healthy baseline (each baseline vector scored *before* the
detector learned it, the cold start skipped) and keeps two numbers: the typical healthy raw score
(the median, m) and the tail of healthy raw scores (the `quantile`, default 99.9th percentile, q).
A raw score r becomes

    t = max(0, r - m) / (q - m)          how far out, in "healthy tails"
    score = 1 - 2 ** -(t ** p)           p chosen so that t = alarm_ratio gives 0.9

which is continuous, monotone, 0 for a typical healthy window and below, and approaches 1.

What the default thresholds mean (operators read this):

- **0.5 (warning)**: the window is as unusual as only 0.1 % of the healthy baseline windows were
  (t = 1). With the 3-of-5 debounce a healthy machine almost never raises it; a warning means
  the machine has persistently left the envelope it showed while learning.
- **0.9 (alarm)**: the window's excess over a typical healthy window is `alarm_ratio` (default 4)
  times the excess of that 0.1 % tail (t = 4): far outside anything seen while healthy.
- Between, the score grows smoothly: 0.7 is t ~ 1.8, 0.8 is t ~ 2.7 (with the defaults).

Scores near 1.0 saturate by design: the score ranks "how sure are we this is not healthy", the
alert reason (per-feature contributions) says how and where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG2_10 = math.log2(10.0)  # t ** p at score 0.9: 1 - 2**-log2(10) = 0.9


@dataclass(frozen=True, slots=True)
class Calibrator:
    """A fitted raw-score -> [0, 1] map (see module docstring).

    Examples
    --------
    >>> cal = Calibrator(median=1.0, tail=3.0)
    >>> [round(cal(r), 3) for r in (0.5, 1.0, 3.0, 9.0, 1e9)]
    [0.0, 0.0, 0.5, 0.9, 1.0]
    >>> cal.raw_at(0.5), round(cal.raw_at(0.9), 9)
    (3.0, 9.0)
    """

    median: float
    tail: float
    quantile: float = 0.999
    alarm_ratio: float = 4.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median) and math.isfinite(self.tail)):
            raise ValueError("calibration needs finite median and tail scores")
        if not 0.5 < self.quantile < 1 or self.alarm_ratio <= 1:
            raise ValueError("calibration needs 0.5 < quantile < 1 and alarm_ratio > 1")

    @classmethod
    def fit(cls, raw_scores, quantile: float = 0.999, alarm_ratio: float = 4.0) -> "Calibrator":
        """Learn median and tail from healthy raw scores (non-finite ones are ignored).

        >>> Calibrator.fit(np.arange(1001.0), quantile=0.9).tail
        900.0
        """
        s = np.asarray(raw_scores, dtype=float)
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise ValueError("calibration needs at least one finite healthy score")
        median, tail = np.quantile(s, [0.5, quantile])
        return cls(float(median), float(tail), quantile, alarm_ratio)

    @property
    def _width(self) -> float:
        # A baseline whose scores do not vary (constant features) still gets a usable scale.
        return max(self.tail - self.median, 1e-12 + 1e-9 * abs(self.median))

    @property
    def _power(self) -> float:
        return math.log(_LOG2_10) / math.log(self.alarm_ratio)

    def __call__(self, raw):
        """Calibrated score(s) in [0, 1] for raw score(s); a float for a float."""
        t = np.maximum(np.asarray(raw, dtype=float) - self.median, 0.0) / self._width
        out = 1.0 - np.exp2(-(t**self._power))
        out = np.where(np.isnan(out), 1.0, out)  # NaN raw: treat as far out rather than silent
        return float(out) if out.ndim == 0 else out

    def raw_at(self, score01: float) -> float:
        """The raw score that calibrates to `score01` (0 < score01 < 1): thresholds in raw units."""
        t = (-math.log2(1.0 - score01)) ** (1.0 / self._power)
        return self.median + t * self._width

    def to_dict(self) -> dict:
        return {"median": self.median, "tail": self.tail, "quantile": self.quantile, "alarm_ratio": self.alarm_ratio}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        return cls(float(d["median"]), float(d["tail"]), float(d["quantile"]), float(d["alarm_ratio"]))


@dataclass(frozen=True, slots=True)
class SurpriseMap:
    """A fixed map from a surprise in decades (-log10 of a tail probability) to [0, 1].

    For detectors whose raw score is already a probability under the stream's own history
    (models/rarity.py): nothing to fit on a baseline, and one threshold means the same on every
    stream. Log-logistic, so that it never saturates to exactly 1.0 (a corpus-wide threshold must
    still rank a surprise of 30 decades above one of 20):

        t = s / s_half,   score = t**p / (1 + t**p),   p chosen so that t = alarm_ratio gives 0.9

    Examples
    --------
    >>> m = SurpriseMap(s_half=2.5, alarm_ratio=2.0)
    >>> [round(m(s), 3) for s in (0.0, 2.5, 5.0)]
    [0.0, 0.5, 0.9]
    >>> m(30.0) < m(40.0) < 1.0
    True
    """

    s_half: float
    alarm_ratio: float = 2.0

    @property
    def _power(self) -> float:
        return math.log(9.0) / math.log(self.alarm_ratio)

    def __call__(self, surprise: float) -> float:
        t = max(float(surprise), 0.0) / self.s_half
        if t == 0.0:
            return 0.0
        u = math.exp(-self._power * math.log(t))  # t**-p without overflow for large t
        return 1.0 / (1.0 + u)

    def to_dict(self) -> dict:
        return {"s_half": self.s_half, "alarm_ratio": self.alarm_ratio}
