"""Streaming Gaussian (Mahalanobis) detector: the machine's healthy features as one ellipsoid.

Feature vectors are mapped to a space where a Gaussian is a fair description of a healthy
machine: energies, RMS values, peaks, kurtosis and crest factor are positive and heavy-tailed
(a fault multiplies them), so they are log-transformed; signed or offset features (skewness,
temperature, its slope) are kept linear. In that space the detector keeps a running mean and
covariance: plain Welford averages while it learns, then, when `half_life` is set,
exponentially weighted ones so the baseline can follow slow, healthy drift.

The score is the squared Mahalanobis distance divided by the number of features (about 1 for a
typical healthy vector). The covariance is shrunk towards its diagonal (Ledoit-Wolf style, more
with fewer samples) and every variance has a floor, so the model is well conditioned after a
few dozen vectors and a constant feature cannot produce an infinite score.
"""

from __future__ import annotations

import math
import re

import numpy as np

from models.base import DetectorBase

# Feature names (the part after "<channel>.") that are positive and grow multiplicatively with a fault.
_LOG_FEATURE = re.compile(r"rms|peak|band_|kurtosis|crest|energy|envelope|velocity|p2p|std")
_LOG_FLOOR = 1e-12  # g^2 and below: digital silence; keeps log() finite
_MIN_REL_STD = 0.01  # 1 % of the value: below that, spread is sensor resolution, not behaviour
Z_CLIP = 1e6  # |z| cap of every detector here: scores stay finite for absurd inputs (a sensor reading 1e300)


def is_log_feature(name: str) -> bool:
    """Whether a feature is modelled on a log scale.

    >>> [is_log_feature(k) for k in ("ax.rms_g", "ax.band_1_2k_g2", "ax.skewness", "temp.mean_c")]
    [True, True, False, False]
    """
    return bool(_LOG_FEATURE.search(name.rsplit(".", 1)[-1]))


def to_array(x: dict[str, float], keys: list[str], log_mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The transformed vector of `x` in `keys` order; missing or non-finite features take `fill`.

    >>> to_array({"a.rms_g": np.e, "t.mean_c": 3.0}, ["a.rms_g", "t.mean_c", "t.x"],
    ...          np.array([True, False, False]), np.zeros(3)).tolist()
    [1.0, 3.0, 0.0]
    """
    v = np.array([x.get(k, math.nan) for k in keys], dtype=float)
    v[log_mask] = np.log(np.maximum(v[log_mask], _LOG_FLOOR))
    bad = ~np.isfinite(v)
    v[bad] = fill[bad]
    return v


def ew_weight(n: int, half_life: float | None) -> float:
    """Weight of the n-th learned vector: 1/n (an exact running mean) until the exponential
    weight of the half-life is larger, then that weight (an exponentially weighted mean).

    >>> ew_weight(1, None), ew_weight(4, None), round(ew_weight(10_000, 100.0), 5)
    (1.0, 0.25, 0.00691)
    """
    w = 1.0 / n
    if half_life is not None and half_life > 0:
        w = max(w, 1.0 - 2.0 ** (-1.0 / half_life))
    return w


def z_contributions(x: dict[str, float], keys: list[str], z: np.ndarray | None) -> dict[str, float]:
    """explain() for detectors built on standardized features: |z| per feature of `x`
    (0 for features the model has not seen, and for all while it has too few vectors)."""
    if z is None:
        return {k: 0.0 for k in x}
    contrib = dict(zip(keys, np.abs(z).tolist()))
    return {k: contrib.get(k, 0.0) for k in x}


def variance_floor(mean: np.ndarray, log_mask: np.ndarray) -> np.ndarray:
    """Smallest variance a feature may have: 1 % relative spread (on the log scale that is
    0.01; on the linear scale 1 % of the magnitude, at least 0.01 units)."""
    return np.where(log_mask, _MIN_REL_STD**2, _MIN_REL_STD**2 * (1.0 + mean**2))


class GaussianDetector(DetectorBase):
    """Squared Mahalanobis distance / dimension, in log-feature space.

    Parameters
    ----------
    half_life
        In learned vectors. None: every learned vector weighs the same (frozen-ish baseline);
        a number: after that many vectors, older ones fade with this half-life.
    shrinkage
        Smallest weight of the diagonal target in the shrunk correlation matrix; the actual
        weight is max(shrinkage, d / (n + d)) with d features and n (effective) samples.
    clip
        {feature: [low, high]} in the features' units, or None. When given (private fleet sharing,
        `fleet.privacy`), every learned vector is also summed clipped to these bounds
        (models/private_stats.py `ClippedSums`, via `clipped()`); the model itself learns the
        vectors as they are. The sums are plain (not weighted by half_life) and follow the
        detector through snapshots, relearning and `state()`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> det = GaussianDetector()
    >>> for r in rng.lognormal(0.0, 0.1, size=(300, 2)):
    ...     det.learn({"ax.rms_g": r[0], "ay.rms_g": r[1]})
    >>> det.score({"ax.rms_g": 1.0, "ay.rms_g": 1.0}) < 1.0 < det.score({"ax.rms_g": 2.0, "ay.rms_g": 1.0})
    True
    >>> max(det.explain({"ax.rms_g": 2.0, "ay.rms_g": 1.0}).items(), key=lambda kv: kv[1])[0]
    'ax.rms_g'
    """

    name = "gaussian"
    version = "1"
    calibration = None  # fitted on the baseline by models/streaming.py
    novelty = False
    adaptive = True  # see models/base.py
    agent_params = ("clip",)  # set from fleet.privacy, not from detector.params (models/registry.py)

    def __init__(self, half_life: float | None = None, shrinkage: float = 0.1,
                 clip: dict[str, list[float]] | None = None) -> None:
        self.half_life = half_life
        self.shrinkage = shrinkage
        self.clip = {str(k): [float(b[0]), float(b[1])] for k, b in clip.items()} if clip else None
        self._clipped: dict | None = None  # {"n", "total", "outer"} while clip is set
        self._box_cache = None  # (low, high, unbounded) of clip in key order, once the keys are known
        self._keys: list[str] = []
        self._log_mask = np.zeros(0, dtype=bool)
        self._n = 0
        self._mean = np.zeros(0)
        self._cov = np.zeros((0, 0))
        self._precision: np.ndarray | None = None  # cache of the shrunk inverse, rebuilt after learn

    def _init_keys(self, x: dict[str, float]) -> None:
        self._keys = list(x)
        self._log_mask = np.array([is_log_feature(k) for k in self._keys], dtype=bool)
        d = len(self._keys)
        self._mean = np.zeros(d)
        self._cov = np.zeros((d, d))
        if self.clip is not None:
            self._clipped = {"n": 0, "total": np.zeros(d), "outer": np.zeros((d, d))}

    def _box(self):
        if self._box_cache is None:
            from models.private_stats import box

            self._box_cache = box(self._keys, self.clip, self._log_mask)
        return self._box_cache

    def learn(self, x: dict[str, float]) -> None:
        if not self._keys:
            self._init_keys(x)
        v = to_array(x, self._keys, self._log_mask, self._mean)
        self._n += 1
        w = ew_weight(self._n, self.half_life)
        delta = v - self._mean
        self._mean = self._mean + w * delta
        # Exponentially weighted covariance; with w = 1/n it is exactly Welford's population covariance.
        self._cov = (1.0 - w) * (self._cov + w * np.outer(delta, delta))
        self._precision = None
        if self._clipped is not None:
            low, high, _ = self._box()
            x = np.clip(v, low, high) - (low + high) / 2.0
            c = self._clipped
            c["n"], c["total"], c["outer"] = c["n"] + 1, c["total"] + x, c["outer"] + np.outer(x, x)

    def clipped(self):
        """(ClippedSums, unbounded features) of the learned vectors (models/private_stats.py), or
        None when the detector was made without `clip` or has learned nothing."""
        if self._clipped is None or not self._clipped["n"]:
            return None
        from models.private_stats import ClippedSums

        low, high, unbounded = self._box()
        c = self._clipped
        return ClippedSums(tuple(self._keys), int(c["n"]), low, high, c["total"].copy(), c["outer"].copy()), unbounded

    def _z_and_precision(self, x: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        v = to_array(x, self._keys, self._log_mask, self._mean)
        var = np.maximum(np.diag(self._cov), variance_floor(self._mean, self._log_mask))
        std = np.sqrt(var)
        z = np.clip((v - self._mean) / std, -Z_CLIP, Z_CLIP)
        if self._precision is None:
            d = len(self._keys)
            corr = self._cov / np.outer(std, std)
            np.fill_diagonal(corr, 1.0)
            n_eff = self._n if not self.half_life else min(self._n, self.half_life / math.log(2.0))
            delta = min(1.0, max(self.shrinkage, d / (n_eff + d)))
            shrunk = (1.0 - delta) * corr + delta * np.eye(d)
            self._precision = np.linalg.inv(shrunk)
        return z, self._precision

    def score(self, x: dict[str, float]) -> float:
        if self._n < 2:
            return 0.0
        z, precision = self._z_and_precision(x)
        return float(max(0.0, z @ precision @ z) / len(z))

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        """|z| per feature: how many baseline standard deviations it sits from its healthy mean."""
        return z_contributions(x, self._keys, self._z_and_precision(x)[0] if self._n >= 2 else None)

    def state(self) -> dict:
        out = {
            "name": self.name,
            "version": self.version,
            "params": {"half_life": self.half_life, "shrinkage": self.shrinkage},
            "keys": self._keys,
            "n": self._n,
            "mean": self._mean.tolist(),
            "cov": self._cov.tolist(),
        }
        if self.clip is not None:  # only then: states, shares and priors of other detectors stay as they were
            out["params"]["clip"] = self.clip
            c = self._clipped
            out["clipped"] = None if c is None else {"n": c["n"], "total": c["total"].tolist(),
                                                     "outer": c["outer"].tolist()}
        return out

    @classmethod
    def from_state(cls, state: dict) -> "GaussianDetector":
        det = cls(**state["params"])
        det._keys = list(state["keys"])
        det._log_mask = np.array([is_log_feature(k) for k in det._keys], dtype=bool)
        det._n = int(state["n"])
        det._mean = np.array(state["mean"], dtype=float).reshape(len(det._keys))
        d = len(det._keys)
        det._cov = np.array(state["cov"], dtype=float).reshape(d, d)
        c = state.get("clipped")
        if det.clip is not None and c is not None:
            det._clipped = {"n": int(c["n"]), "total": np.array(c["total"], dtype=float).reshape(d),
                            "outer": np.array(c["outer"], dtype=float).reshape(d, d)}
        return det
