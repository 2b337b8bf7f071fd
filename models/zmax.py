"""Per-feature z-score detector: the worst single feature decides.

The diagonal sibling of models/gaussian.py (same log-feature space, same running mean and
variance): it ignores correlations between features, so it cannot see a fault that only
breaks a relation (e.g. the ratio of two bands), but it is trivially explainable and needs
no matrix inverse. Score = max over features of z^2.
"""

from __future__ import annotations

import numpy as np

from models.base import DetectorBase
from models.gaussian import Z_CLIP, ew_weight, z_contributions, is_log_feature, to_array, variance_floor



class ZMaxDetector(DetectorBase):
    """Largest squared per-feature z-score.

    Examples
    --------
    >>> det = ZMaxDetector()
    >>> for v in (0.9, 1.0, 1.1, 1.0):
    ...     det.learn({"ax.rms_g": v, "temp.mean_c": 40.0})
    >>> det.score({"ax.rms_g": 1.0, "temp.mean_c": 40.0}) < det.score({"ax.rms_g": 3.0, "temp.mean_c": 40.0})
    True
    """

    name = "zmax"
    version = "1"
    calibration = None  # fitted on the baseline by models/streaming.py
    novelty = False
    adaptive = True  # see models/base.py

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life
        self._keys: list[str] = []
        self._log_mask = np.zeros(0, dtype=bool)
        self._n = 0
        self._mean = np.zeros(0)
        self._var = np.zeros(0)

    def learn(self, x: dict[str, float]) -> None:
        if not self._keys:
            self._keys = list(x)
            self._log_mask = np.array([is_log_feature(k) for k in self._keys], dtype=bool)
            self._mean = np.zeros(len(self._keys))
            self._var = np.zeros(len(self._keys))
        v = to_array(x, self._keys, self._log_mask, self._mean)
        self._n += 1
        w = ew_weight(self._n, self.half_life)
        delta = v - self._mean
        self._mean = self._mean + w * delta
        self._var = (1.0 - w) * (self._var + w * delta**2)

    def _z(self, x: dict[str, float]) -> np.ndarray:
        v = to_array(x, self._keys, self._log_mask, self._mean)
        std = np.sqrt(np.maximum(self._var, variance_floor(self._mean, self._log_mask)))
        return np.clip((v - self._mean) / std, -Z_CLIP, Z_CLIP)

    def score(self, x: dict[str, float]) -> float:
        if self._n < 2:
            return 0.0
        return float(np.max(self._z(x) ** 2))

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        return z_contributions(x, self._keys, self._z(x) if self._n >= 2 else None)

    def state(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "params": {"half_life": self.half_life},
            "keys": self._keys,
            "n": self._n,
            "mean": self._mean.tolist(),
            "var": self._var.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "ZMaxDetector":
        det = cls(**state["params"])
        det._keys = list(state["keys"])
        det._log_mask = np.array([is_log_feature(k) for k in det._keys], dtype=bool)
        det._n = int(state["n"])
        det._mean = np.array(state["mean"], dtype=float).reshape(len(det._keys))
        det._var = np.array(state["var"], dtype=float).reshape(len(det._keys))
        return det
