"""Clipped sufficient statistics of a Gaussian baseline, released with differential privacy.

A fleet share (agent/fleet_share.py) is a count, a mean and a covariance: sums over windows. With
no bound on one window's values, one window can move them without limit, and noise cannot hide
it. So, when sharing is private (`fleet.privacy`), the gaussian detector (models/gaussian.py) also
keeps sums over its learned windows *clipped* to declared bounds, in its log-feature space: every
feature value v_j to [L_j, U_j] (log L_j, log U_j for log features), centred on the box's middle
c_j. With h the box's half-widths, x = clip(v) - c and n windows (n is public: it follows from
`learn_seconds` and the window cadence), the released statistics are

    S = sum x   (d numbers)       Q = sum x x'  (its d(d+1)/2 upper entries, or its d diagonal ones)

Neighbouring baselines differ in one window, replaced by any other (the unit of docs/privacy.md).
Their L2 sensitivities (Dwork & Roth, "The Algorithmic Foundations of Differential Privacy", 2014,
Def. 3.8 and App. A, the Gaussian mechanism):

    S:            ||x - y|| <= 2 ||h||
    Q, full:      ||x x' - y y'||_F <= sqrt(||x||^4 + ||y||^4) <= sqrt(2) ||h||^2
    Q, diagonal:  ||x^2 - y^2|| <= sqrt(2) ||h^2||

(the upper triangle's norm is at most the whole matrix's). S and Q are divided by their
sensitivities and released as one vector of L2 sensitivity sqrt(2) by one Gaussian measurement
(the caller's `noise`, OpenDP's in the agent). What is published is then post-processing, which
costs no privacy: mean = c + S/n, covariance = Q/n - (S/n)(S/n)', the mean held inside the box and
each variance below h^2 (what clipped windows can have). The covariance of one noised
share may be indefinite; pooling (models/pooling.py) is linear in these sums, so shares are pooled
as released and the pool is projected onto the positive semi-definite matrices once (`nearest_psd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

COVARIANCES = ("full", "diagonal")


@dataclass(frozen=True)
class ClippedSums:
    """Sums over n windows clipped to the box [low, high] (transformed space, shape (d,) each):
    total = sum of (clip(v) - centre), shape (d,); outer = sum of their outer products, (d, d)."""

    keys: tuple[str, ...]
    n: int
    low: np.ndarray
    high: np.ndarray
    total: np.ndarray
    outer: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        return (self.low + self.high) / 2.0


def box(keys, bounds: dict, log_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(low, high, unbounded) in the detector's space for features `keys` given `bounds`
    {feature: (low, high)} in the features' units: log features are bounded by the logs of
    positive bounds. A feature without bounds, or a log feature whose low bound is not above 0,
    is listed in `unbounded` (its box is (0, 0): the caller refuses to release)."""
    low, high, unbounded = np.zeros(len(keys)), np.zeros(len(keys)), []
    for j, k in enumerate(keys):
        b = bounds.get(k)
        if b is None or not b[0] < b[1] or (log_mask[j] and b[0] <= 0):
            unbounded.append(k)
            continue
        low[j], high[j] = (math.log(b[0]), math.log(b[1])) if log_mask[j] else (float(b[0]), float(b[1]))
    return low, high, unbounded


def sensitivities(low: np.ndarray, high: np.ndarray, covariance: str = "full") -> tuple[float, float]:
    """L2 sensitivities (module docstring) of S and of Q's released entries for the box."""
    h = (high - low) / 2.0
    s_total = 2.0 * float(np.linalg.norm(h))
    s_outer = math.sqrt(2.0) * (float(h @ h) if covariance == "full" else float(np.linalg.norm(h * h)))
    return s_total, s_outer


def _entries(covariance: str, d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(d) if covariance == "full" else (np.arange(d), np.arange(d))


def release(sums: ClippedSums, noise: Callable[[list[float]], list[float]], covariance: str = "full") -> dict:
    """Noised statistics of `sums`: {"n", "mean" (d,), "cov" (d, d), "sensitivity"}.

    noise: a measurement of L2 sensitivity sqrt(2) on the normalised vector (module docstring),
    given as a list of floats and returning one of the same length. The covariance is symmetric
    but may be indefinite; off-diagonal entries are 0 when `covariance` is "diagonal"."""
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}, not {covariance!r}")
    d = len(sums.keys)
    s_total, s_outer = sensitivities(sums.low, sums.high, covariance)
    rows, cols = _entries(covariance, d)
    vector = np.concatenate([sums.total / s_total, sums.outer[rows, cols] / s_outer])
    noised = np.asarray(noise(vector.tolist()), dtype=float)
    total = noised[:d] * s_total
    outer = np.zeros((d, d))
    outer[rows, cols] = noised[d:] * s_outer
    outer = outer + np.triu(outer, 1).T
    # The clipped windows' mean lies in the box and their variances below the half-widths squared:
    # holding the noised values to that is post-processing, and never moves them further from the truth.
    h = (sums.high - sums.low) / 2.0
    shift = np.clip(total / sums.n, -h, h)
    cov = outer / sums.n - np.outer(shift, shift)
    np.fill_diagonal(cov, np.minimum(np.diag(cov), h * h))
    if covariance == "diagonal":
        cov = np.diag(np.diag(cov))
    return {"n": sums.n, "mean": sums.centre + shift, "cov": cov,
            "sensitivity": {"sum": s_total, "outer": s_outer}}


def noise_sd(n: int, scale: float, sensitivity: dict) -> tuple[float, float]:
    """Standard deviations of the noise on each released mean and on each released variance: the
    Gaussian mechanism's `scale` (in units of sensitivity) times S's and Q's sensitivities, over n
    windows. Public: they follow from epsilon, delta, the bounds and n, not from the data (the small
    noise the mean adds to the variances is left out)."""
    return float(scale) * float(sensitivity["sum"]) / int(n), float(scale) * float(sensitivity["outer"]) / int(n)


def nearest_psd(cov: np.ndarray) -> np.ndarray:
    """The positive semi-definite matrix nearest to symmetric `cov` in Frobenius norm (Higham,
    "Computing a nearest symmetric positive semidefinite matrix", 1988): negative eigenvalues set
    to 0. The detector's variance floor (models/gaussian.py) keeps the result usable.

    >>> nearest_psd(np.array([[1.0, 2.0], [2.0, 1.0]])).round(3).tolist()
    [[1.5, 1.5], [1.5, 1.5]]
    """
    w, v = np.linalg.eigh((cov + cov.T) / 2.0)
    return (v * np.maximum(w, 0.0)) @ v.T


def bounds_from(keys, mean: np.ndarray, cov: np.ndarray, log_mask: np.ndarray, k: float,
                floor: np.ndarray | float = 0.0) -> dict[str, list[float]]:
    """Bounds {feature: [low, high]} in the features' units: mean -/+ k standard deviations of a
    reference baseline (mean, cov in the detector's space), back-transformed (exp for log features).
    floor: the smallest variance (the detector's `variance_floor`), so a constant feature gets a box.

    For `fleet.privacy.bounds` from a machine that does *not* share (its test bench, a spare):
    bounds from a sharing machine's own data would publish its extremes (agent/fleet_privacy.py).

    >>> bounds_from(["a.rms_g", "t.mean_c"], np.array([0.0, 40.0]), np.diag([0.01, 4.0]),
    ...             np.array([True, False]), 3.0)
    {'a.rms_g': [0.7408, 1.35], 't.mean_c': [34.0, 46.0]}
    """
    sd = np.sqrt(np.maximum(np.diag(cov), floor))
    out = {}
    for j, key in enumerate(keys):
        low, high = mean[j] - k * sd[j], mean[j] + k * sd[j]
        if log_mask[j]:
            low, high = math.exp(low), math.exp(high)
        out[str(key)] = [float(f"{low:.4g}"), float(f"{high:.4g}")]
    return out
