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

Short baselines. The empirical 99.9th percentile of n scores is an interpolation only when
n >= 1 / (1 - quantile) (1000 scores at the default); below that it is in effect the sample
maximum, whose exceedance rate is 1 / (n + 1), not 0.1 % (with 5 scores: one window in six).
`Calibrator.fit` then fits a parametric tail instead (method "exponential-tail", peaks over
threshold): the k scores above the median m exceed it by amounts taken as exponential with an
unknown scale; with Jeffreys' prior the predictive distribution of a new excess is Lomax,
P(E > e) = (1 + e / S) ** -k with S the sum of the k excesses (e.g. Coles, "An Introduction to
Statistical Modeling of Extreme Values", 2001, ch. 4 and 9). The tail is where a new score
exceeds with probability 1 - quantile:

    q = m + S * ((k / (n * (1 - quantile))) ** (1 / k) - 1)

which tends to m + mean excess * ln(k / (n (1 - quantile))) for large k, and widens for few
scores (5 scores: the tail sits 19 mean excesses above the median, against 6.2 for a known
scale), so a short baseline warns only far outside what it saw. The exponential tail fits the
scores of every detector here (a Mahalanobis distance, a max of z-scores, a T² + Q) from above
well enough; a heavier true tail shows as false alarms, measured in bench/baseline.py.

One glitch among few scores (a window read across a line resync) would set S on its own. With 3
or more excesses, an excess above 20 times their median is left out first (and n and k counted
without it): for exponential excesses that happens with probability 2 ** -20 each, so only a
glitch is dropped, and the bound stays calibrated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG2_10 = math.log2(10.0)  # t ** p at score 0.9: 1 - 2**-log2(10) = 0.9
_MIN_PARAMETRIC = 2  # scores above the median the exponential tail needs
_GLITCH = 20.0  # an excess this many times the median excess is a glitch, not tail (P = 2**-20)


def glitches(raw_scores) -> np.ndarray:
    """Which scores are glitches: with 3 or more above the median, those whose excess over it is
    more than 20 times the median excess (module docstring). A boolean mask, same length.

    >>> glitches([1.0, 1.1, 1.2, 0.9, 1.3, 1.0, 500.0]).tolist()
    [False, False, False, False, False, False, True]
    """
    s = np.asarray(raw_scores, dtype=float)
    median = float(np.median(s)) if s.size else 0.0
    excess = s - median
    above = excess > 0
    if above.sum() < 3:
        return np.zeros(s.size, dtype=bool)
    return excess > _GLITCH * np.median(excess[above])


def exponential_tail(raw_scores, quantile: float) -> tuple[float, float, int] | None:
    """(median, tail, k) of the predictive exponential tail over the median (module docstring),
    or None with fewer than 2 scores above the median.

    >>> m, q, k = exponential_tail([1.0, 1.2, 0.9, 1.1, 1.0], 0.999)
    >>> m, round(q, 2), k
    (1.0, 6.7, 2)
    """
    s = np.asarray(raw_scores, dtype=float)
    n = s.size
    median = float(np.median(s)) if n else 0.0
    glitch = glitches(s)  # one glitch must not widen the tail of a short baseline (module docstring)
    n -= int(glitch.sum())
    excess = s[(s > median) & ~glitch] - median
    k = int(excess.size)
    if k < _MIN_PARAMETRIC:
        return None
    total = float(excess.sum())
    tail = median + total * ((k / (n * (1.0 - quantile))) ** (1.0 / k) - 1.0)
    return median, tail, k


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
    method: str = "empirical"  # "empirical" | "exponential-tail" (short baselines, see module docstring)
    n: int = 0  # healthy scores it was fitted on

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median) and math.isfinite(self.tail)):
            raise ValueError("calibration needs finite median and tail scores")
        if not 0.5 < self.quantile < 1 or self.alarm_ratio <= 1:
            raise ValueError("calibration needs 0.5 < quantile < 1 and alarm_ratio > 1")

    @classmethod
    def fit(cls, raw_scores, quantile: float = 0.999, alarm_ratio: float = 4.0) -> "Calibrator":
        """Learn median and tail from healthy raw scores (non-finite ones are ignored): the
        empirical quantile when there are at least 1 / (1 - quantile) scores, else the
        predictive exponential tail (module docstring), else (fewer than 2 scores above the
        median) the empirical quantile of what there is. ValueError when no score is finite.

        >>> Calibrator.fit(np.arange(1001.0), quantile=0.9).tail
        900.0
        >>> cal = Calibrator.fit([1.0, 1.2, 0.9, 1.1, 1.0])
        >>> cal.method, round(cal.median, 3), round(cal.tail, 2)
        ('exponential-tail', 1.0, 6.7)
        """
        s = np.asarray(raw_scores, dtype=float)
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise ValueError("calibration needs at least one finite healthy score")
        fitted = exponential_tail(s, quantile) if s.size * (1.0 - quantile) < 1.0 else None
        if fitted is not None:
            return cls(fitted[0], fitted[1], quantile, alarm_ratio, "exponential-tail", int(s.size))
        median, tail = np.quantile(s, [0.5, quantile])
        return cls(float(median), float(tail), quantile, alarm_ratio, "empirical", int(s.size))

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
        return {"median": self.median, "tail": self.tail, "quantile": self.quantile, "alarm_ratio": self.alarm_ratio,
                "method": self.method, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibrator":
        return cls(float(d["median"]), float(d["tail"]), float(d["quantile"]), float(d["alarm_ratio"]),
                   str(d.get("method", "empirical")), int(d.get("n", 0)))


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
