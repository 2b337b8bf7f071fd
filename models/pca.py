"""PCA T² + Q detector for low-rate multivariate sensors (MSET-like), numpy only.

Transmitters that report one row of values about once a second (vibration RMS, current, pressure,
flow, temperatures) move together while a machine is healthy: a pump's current, pressure and flow
follow its operating point. A fault breaks those relations before any single value leaves its
range. This detector learns the healthy correlation structure and scores a row by

- T², the Mahalanobis distance inside the principal subspace (the k components that explain
  `variance` of the standardized baseline), divided by k: "an unusual operating point";
- Q (squared prediction error), the part of the row the healthy subspace cannot explain, divided
  by its healthy expectation (the sum of the discarded eigenvalues): "a broken relation";

and returns their mean, so a typical healthy row scores about 1 (`statistic: t2q`).

`statistic: maxz` scores a row by its worst channel instead: the largest squared z of the
filtered, standardized channels, or the weighted Q/θ when a broken relation is worse,

    score = max(max_c z_c², w_d · Q/θ),   w_d = E[max of d independent χ²(1)] (3.46 for d = 8)

so that both terms have the same mean on a healthy row of d Gaussian channels. T²/k spreads one
channel's departure over the k components (a valve that halves one flow among 8 channels moves
T²/k by z²/8); the largest z keeps it whole, and Q still sees a relation that breaks with every
channel inside its range. Chosen for low-rate rows by leave-one-file-out on SKAB (docs/detectors.md).

Two input filters make 1 Hz sensor data usable, both learned from SKAB's water-pump testbed and
documented in docs/BENCHMARKS.md:

- **Smoothing**: the row is replaced by the mean of the last `smooth` rows. Single 1 Hz readings are
  noisy (quantized flow, pressure spikes); a developing fault persists. The filter needs the rows
  that came before, which the detector keeps as input context: `observe(x)` (called by
  models/streaming.py after each row is scored and learned) appends x to it. The context is part of
  `state()` so a restart resumes seamlessly; `score` and `learn` only read it.
- **Rate of change for temperatures**: channels whose name matches `rate_of_change` (a regex,
  default temperatures and thermocouples) enter as their change per row over the smoothing window,
  not as their level. Temperatures follow ambient and load over hours, far longer than any baseline
  a gateway can learn first, so their level drifts out of the envelope on a healthy machine; a
  sudden heating or cooling still shows. Slow overheating is the univariate `trend` detector's job.

For waveform bursts (one feature vector per capture, e.g. every 10 minutes) two options make the
same detector follow slow degradation: `median` smoothing (a single glitched capture moves neither
the baseline nor the score) and `log_features` (energies and peaks, which a fault multiplies, on a
log scale). Replay's burst defaults use both (docs/detectors.md).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> det = PcaDetector(smooth=1)
>>> for load in rng.normal(0, 1, 300):
...     det.learn({"current": 10 + load, "flow": 30 + 3 * load + 0.1 * rng.normal()})
>>> ok = det.score({"current": 11.0, "flow": 33.0})      # a different but healthy operating point
>>> broken = det.score({"current": 11.0, "flow": 30.0})  # current up, flow not: a broken relation
>>> ok < 3 < broken
True
"""

from __future__ import annotations

import functools
import math
import re
from collections import deque

import numpy as np

from models.base import DetectorBase
from models.gaussian import Z_CLIP, ew_weight, is_log_feature, to_array, variance_floor, z_contributions

STATISTICS = ("t2q", "maxz")


@functools.lru_cache(maxsize=64)
def expected_max_chi2(d: int) -> float:
    """E[max of d independent χ²(1)] = ∫ (1 - F(x)^d) dx, F(x) = erf(sqrt(x / 2)) the χ²(1) CDF
    (trapezoid rule on [0, 80] in steps of 0.01; P(χ²(1) > 80) < 1e-18).

    >>> round(expected_max_chi2(1), 3), round(expected_max_chi2(8), 2)
    (1.0, 3.46)
    """
    x = np.linspace(0.0, 80.0, 8001)
    cdf = np.array([math.erf(math.sqrt(v / 2.0)) for v in x])
    y = 1.0 - cdf ** max(int(d), 1)
    return float(np.sum((y[1:] + y[:-1]) * 0.5 * np.diff(x)))


class PcaDetector(DetectorBase):
    """T²/k + Q/θ on smoothed, standardized rows (see module docstring).

    Parameters
    ----------
    variance
        Fraction of the standardized baseline variance the principal subspace keeps (0.99).
    smooth
        Rows averaged before scoring (10: 10 s at 1 Hz); 1 disables the filter.
    rate_of_change
        Regex (case-insensitive) of channel names modelled by their change per row, not their
        level; "" models every channel by its level.
    horizon
        Rows over which a rate of change is taken: the change from the row max(smooth, horizon)
        rows back to the smoothed row, divided by that count (the window keeps that many rows).
    half_life
        In learned rows; None = equal weights. Set by the streaming model from `adapt_half_life_s`.
    median
        Smooth with the median of the window instead of the mean: one outlying row (a burst with a
        sensor glitch) then moves nothing, neither the baseline nor the score.
    log_features
        Model energies, RMS, peaks, kurtosis and crest factors by their logarithm (models/gaussian.py
        `is_log_feature`): waveform features, which a fault multiplies.
    statistic
        "t2q": (T²/k + Q/θ) / 2; "maxz": max(largest squared channel z, w_d · Q/θ) (module
        docstring). ValueError for any other name.
    """

    name = "pca"
    version = "1"
    calibration = None  # fitted on the baseline by models/streaming.py
    novelty = False
    adaptive = True
    contextual = True  # see models/base.py

    def __init__(
        self,
        variance: float = 0.99,
        smooth: int = 10,
        rate_of_change: str = "temp|thermo",
        horizon: int = 10,
        half_life: float | None = None,
        median: bool = False,
        log_features: bool = False,
        statistic: str = "t2q",
    ) -> None:
        if not 0.0 < variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        if int(smooth) < 1:
            raise ValueError(f"smooth must be >= 1 row, got {smooth}")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
        self.statistic = statistic
        self.variance = variance
        self.smooth = int(smooth)
        self.rate_of_change = rate_of_change
        self.horizon = int(horizon)
        self.half_life = half_life
        self.median = bool(median)
        self.log_features = bool(log_features)
        self._keys: list[str] = []
        self._roc = np.zeros(0, dtype=bool)
        self._log = np.zeros(0, dtype=bool)
        self._n = 0
        self._mean = np.zeros(0)
        self._cov = np.zeros((0, 0))
        self._context: deque[np.ndarray] = deque(maxlen=max(self.smooth, self.horizon))
        self._pending: deque[np.ndarray] = deque()  # learned rows not yet in the model (see learn)
        self._pca: tuple | None = None  # cache (std, vectors, eigenvalues, k, theta), rebuilt after learn

    # -- input filters ----------------------------------------------------------------
    def _init_keys(self, x: dict[str, float]) -> None:
        self._keys = list(x)
        pattern = re.compile(self.rate_of_change, re.IGNORECASE) if self.rate_of_change else None
        self._roc = np.array([bool(pattern and pattern.search(k)) for k in self._keys], dtype=bool)
        self._log = np.array([self.log_features and is_log_feature(k) for k in self._keys], dtype=bool)
        d = len(self._keys)
        self._mean = np.zeros(d)
        self._cov = np.zeros((d, d))

    def _raw(self, x: dict[str, float]) -> np.ndarray:
        fill = self._context[-1] if self._context else np.zeros(len(self._keys))
        return to_array(x, self._keys, self._log, fill)

    def _features(self, x: dict[str, float]) -> np.ndarray:
        """The smoothed row, temperatures as change per row over the window."""
        v = self._raw(x)
        past = list(self._context)
        window = past[len(past) - (self.smooth - 1):] if self.smooth > 1 else []
        f = (np.median if self.median else np.mean)([*window, v], axis=0) if window else v
        if self._roc.any():
            slope = (f - past[0]) / len(past) if past else np.zeros_like(v)
            f = np.where(self._roc, slope, f)
        return f

    def observe(self, x: dict[str, float]) -> None:
        """x becomes input context for the rows that follow (the smoothing window)."""
        if not self._keys:
            self._init_keys(x)
        self._context.append(self._raw(x))

    # -- model ------------------------------------------------------------------------
    def learn(self, x: dict[str, float]) -> None:
        if not self._keys:
            self._init_keys(x)
        # A row's smoothed features share all but one raw row with its neighbours'. A row enters
        # the model only once no later row's window overlaps it, so a row scored before it is
        # learned is scored out of sample: the baseline scores the calibration is fitted on are
        # then as high as those of new healthy rows, not optimistically low.
        self._pending.append(self._features(x))
        while len(self._pending) > self._context.maxlen - 1:
            self._incorporate(self._pending.popleft())

    def _incorporate(self, f: np.ndarray) -> None:
        self._n += 1
        w = ew_weight(self._n, self.half_life)
        delta = f - self._mean
        self._mean = self._mean + w * delta
        self._cov = (1.0 - w) * (self._cov + w * np.outer(delta, delta))
        self._pca = None

    def _decomposition(self) -> tuple:
        if self._pca is None:
            d = len(self._keys)
            # 1 % of the value: below that, spread is sensor resolution, not behaviour. Measured on
            # SKAB: a 0.1 % floor fits valve1 better but doubles false alarms on the anomaly-free day.
            floor = variance_floor(self._mean, self._log)
            floor = np.where(self._roc, 1e-12, floor)  # rates of change sit near 0: no relative floor
            std = np.sqrt(np.maximum(np.diag(self._cov), floor))
            corr = self._cov / np.outer(std, std)
            np.fill_diagonal(corr, 1.0)
            values, vectors = np.linalg.eigh(corr)
            order = np.argsort(values)[::-1]
            values, vectors = np.maximum(values[order], 1e-3), vectors[:, order]
            k = int(np.searchsorted(np.cumsum(values) / values.sum(), self.variance - 1e-12) + 1)
            k = min(k, d)
            theta = max(float(values[k:].sum()), 1e-3 * d)  # healthy mean of Q
            self._pca = (std, vectors[:, :k], values[:k], k, theta)
        return self._pca

    def _z(self, x: dict[str, float]) -> np.ndarray:
        std = self._decomposition()[0]
        return np.clip((self._features(x) - self._mean) / std, -Z_CLIP, Z_CLIP)

    def score(self, x: dict[str, float]) -> float:
        if self._n < 2:
            return 0.0
        _, vectors, values, k, theta = self._decomposition()
        z = self._z(x)
        t = z @ vectors
        t2 = float(np.sum(t * t / values)) / k
        residual = z - vectors @ t
        q = float(residual @ residual) / theta
        if self.statistic == "maxz":
            s = max(float(np.max(z * z)), expected_max_chi2(len(z)) * q)
        else:
            s = 0.5 * (t2 + q)
        return s if math.isfinite(s) else 1e12

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        """|z| per channel: baseline standard deviations from its healthy (smoothed) mean."""
        return z_contributions(x, self._keys, self._z(x) if self._n >= 2 else None)

    # -- persistence --------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "params": {
                "variance": self.variance, "smooth": self.smooth,
                "rate_of_change": self.rate_of_change, "horizon": self.horizon,
                "half_life": self.half_life, "median": self.median, "log_features": self.log_features,
                "statistic": self.statistic,
            },
            "keys": self._keys,
            "n": self._n,
            "mean": self._mean.tolist(),
            "cov": self._cov.tolist(),
            "context": [c.tolist() for c in self._context],
            "pending": [p.tolist() for p in self._pending],
        }

    @classmethod
    def from_state(cls, state: dict) -> "PcaDetector":
        det = cls(**state["params"])
        if state["keys"]:
            det._init_keys(dict.fromkeys(state["keys"], 0.0))
        d = len(det._keys)
        det._n = int(state["n"])
        det._mean = np.array(state["mean"], dtype=float).reshape(d)
        det._cov = np.array(state["cov"], dtype=float).reshape(d, d)
        for c in state.get("context", []):
            det._context.append(np.array(c, dtype=float).reshape(d))
        for p in state.get("pending", []):
            det._pending.append(np.array(p, dtype=float).reshape(d))
        return det
