"""Exact pooling of Gaussian baselines learned on several machines: the fleet prior's statistics.

The gaussian detector (models/gaussian.py) keeps, in its log-feature space, the count n, the mean
and the population covariance of the windows it learned (Welford, every window weighing 1/n).
These are sufficient statistics: the baseline learned on the union of several data sets follows
from them exactly, whatever the order, by the parallel algorithm of Chan, Golub and LeVeque
("Algorithms for computing the sample variance: analysis and recommendations", The American
Statistician 37, 1983, eq. 2.1, here in its multivariate form):

    n = na + nb,   delta = mean_b - mean_a
    mean = mean_a + delta * nb / n
    M2 = M2a + M2b + outer(delta, delta) * na * nb / n        (M2 = n * population covariance)

The last term is the between-machine spread: a prior pooled from machines of one type is wider than
any one of them, by what separates them.

What cannot be pooled exactly is refused with the reason (`PoolingError`), never approximated:
other detectors (tree masses, PCA subspaces, histories are not sums over windows), a gaussian
learned with its own `half_life` (exponentially weighted, not counts), differing feature sets or
shrinkage. The calibration (models/calibration.py: a median and a 99.9 % tail of healthy raw scores)
is a quantile, not a sufficient statistic; `pool_calibration` derives the prior's from the donors'
on leave-one-machine-out scores (docs/federated.md), and says so in its `method`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.gaussian import is_log_feature, variance_floor

POOLABLE = "gaussian"
# A healthy baseline's median and 99.9 % tail raw score over its mean raw score (private_calibration):
# medians 1.02 and 2.84, largest 1.10 and 3.01, of six simulated machines (seeds 500-505, docs/federated.md).
MEDIAN_RATIO, TAIL_RATIO = 1.02, 3.0


class PoolingError(ValueError):
    """Statistics that cannot be pooled exactly; the message says which and why."""


@dataclass(frozen=True)
class GaussianStats:
    """One baseline's sufficient statistics in the detector's transformed (log-feature) space.

    keys: feature names, d of them; n: windows learned; mean: shape (d,); cov: population
    covariance, shape (d, d); shrinkage: the detector's parameter (must agree to be pooled).
    """

    keys: tuple[str, ...]
    n: int
    mean: np.ndarray
    cov: np.ndarray
    shrinkage: float = 0.1

    def reordered(self, keys) -> "GaussianStats":
        """The same statistics with the features in `keys` order (same set)."""
        idx = [self.keys.index(k) for k in keys]
        return GaussianStats(tuple(keys), self.n, self.mean[idx], self.cov[np.ix_(idx, idx)], self.shrinkage)


def stats_of(detector_state: dict, where: str = "baseline") -> GaussianStats:
    """The pooled-ready statistics of a detector `state()`; PoolingError (naming `where`) when
    they cannot be pooled exactly or are malformed."""
    if not isinstance(detector_state, dict):
        raise PoolingError(f"{where}: no detector statistics")
    name = detector_state.get("name")
    if name != POOLABLE:
        raise PoolingError(
            f"{where}: detector {name!r} cannot be pooled exactly (only {POOLABLE!r} keeps sufficient "
            "statistics: counts, means, covariance); its baseline is not shared nor merged")
    params = detector_state.get("params") or {}
    if params.get("half_life") is not None:
        raise PoolingError(f"{where}: learned with detector.params.half_life={params['half_life']}: an "
                           "exponentially weighted baseline has no exact counts to pool")
    try:
        keys = tuple(str(k) for k in detector_state["keys"])
        n = int(detector_state["n"])
        d = len(keys)
        mean = np.array(detector_state["mean"], dtype=float).reshape(d)
        cov = np.array(detector_state["cov"], dtype=float).reshape(d, d)
        shrinkage = float(params.get("shrinkage", 0.1))
    except (KeyError, TypeError, ValueError) as exc:
        raise PoolingError(f"{where}: malformed statistics ({exc})") from None
    if d == 0 or n < 2:
        raise PoolingError(f"{where}: {n} window(s) learned; at least 2 are needed to pool")
    if len(set(keys)) != d:
        raise PoolingError(f"{where}: duplicate feature names")
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()) or not np.allclose(cov, cov.T):
        raise PoolingError(f"{where}: statistics not finite or covariance not symmetric")
    return GaussianStats(keys, n, mean, cov, shrinkage)


def pool(parts: list[GaussianStats], names: list[str] | None = None) -> GaussianStats:
    """Exact pooled statistics of `parts` (Chan et al., module docstring): equal, to float
    rounding, to the statistics one detector learns from all their windows. The features of
    the first part set the order; PoolingError when feature sets or shrinkage differ
    (`names` label the parts in the message)."""
    if not parts:
        raise PoolingError("nothing to pool")
    names = names or [f"baseline {i + 1}" for i in range(len(parts))]
    first = parts[0]
    n, mean, m2 = first.n, first.mean.copy(), first.cov * first.n
    for part, name in zip(parts[1:], names[1:]):
        if set(part.keys) != set(first.keys):
            missing = sorted(set(first.keys) - set(part.keys))[:3]
            extra = sorted(set(part.keys) - set(first.keys))[:3]
            raise PoolingError(f"{name}: features differ from {names[0]}'s (missing {missing}, unexpected "
                               f"{extra}): baselines of different sensor set-ups cannot be pooled")
        if part.shrinkage != first.shrinkage:
            raise PoolingError(f"{name}: detector shrinkage {part.shrinkage} differs from {names[0]}'s "
                               f"{first.shrinkage}")
        part = part.reordered(first.keys)
        total = n + part.n
        delta = part.mean - mean
        mean = mean + delta * (part.n / total)
        m2 = m2 + part.cov * part.n + np.outer(delta, delta) * (n * part.n / total)
        n = total
    return GaussianStats(first.keys, n, mean, m2 / n, first.shrinkage)


def detector_state(stats: GaussianStats, half_life: float | None = None) -> dict:
    """A gaussian detector `state()` holding `stats` (models/gaussian.py `from_state`)."""
    return {"name": POOLABLE, "version": "1", "params": {"half_life": half_life, "shrinkage": stats.shrinkage},
            "keys": list(stats.keys), "n": int(stats.n), "mean": stats.mean.tolist(), "cov": stats.cov.tolist()}


def _form(model: GaussianStats) -> np.ndarray:
    """The matrix A of the detector's raw score (v - mean)' A (v - mean) / d, as models/gaussian.py
    computes it (variance floor, correlation shrunk towards the identity, no half-life)."""
    d = len(model.keys)
    log_mask = np.array([is_log_feature(k) for k in model.keys], dtype=bool)
    std = np.sqrt(np.maximum(np.diag(model.cov), variance_floor(model.mean, log_mask)))
    corr = model.cov / np.outer(std, std)
    np.fill_diagonal(corr, 1.0)
    delta = min(1.0, max(model.shrinkage, d / (model.n + d)))
    precision = np.linalg.inv((1.0 - delta) * corr + delta * np.eye(d))
    return precision / np.outer(std, std)


def expected_score(model: GaussianStats, data: GaussianStats) -> tuple[float, float]:
    """Mean raw score `model` gives the windows summarised by `data` (same features), in two
    parts, exact from the statistics: E[(v - m)' A (v - m)] / d = tr(A C) / d + (mu - m)' A (mu - m) / d,
    the spread of the windows around their own mean (`within`) and the offset of that mean from
    the model's (`offset`). Returns (within, offset)."""
    data = data.reordered(model.keys)
    a = _form(model)
    off = data.mean - model.mean
    d = len(model.keys)
    return float(np.trace(a @ data.cov) / d), float(off @ a @ off / d)


def pool_calibration(donors: list[tuple[GaussianStats, dict]]) -> dict:
    """The prior's calibration from the donors' (models/calibration.py `Calibrator.to_dict()`), on
    leave-one-machine-out scores, as a short baseline is calibrated on leave-one-out scores.

    A new machine is one the prior has not seen. So each donor i is scored by the prior pooled from
    the *other* donors: its windows' spread scores w_i = within(others, i) / within(i, i) times what
    its own model gave, and their mean sits off by offset(others, i) (`expected_score`); the donor's
    own median m_i and tail q_i become w_i m_i + offset_i and w_i q_i + offset_i. The prior takes the
    count-weighted mean of those medians and the largest of those tails: a new machine is taken to
    differ from the donors as much as they differ from each other, and no donor's healthy tail, so
    scored, may reach the warning level. With one donor it is that donor's calibration. Donors must
    agree on quantile and alarm_ratio (PoolingError otherwise).
    """
    if not donors:
        raise PoolingError("no calibration to pool")
    q0, a0 = float(donors[0][1]["quantile"]), float(donors[0][1]["alarm_ratio"])
    medians, tails, weights, scored = [], [], [], 0
    for i, (stats, cal) in enumerate(donors):
        if float(cal["quantile"]) != q0 or float(cal["alarm_ratio"]) != a0:
            raise PoolingError("donors calibrated with different quantile or alarm_ratio cannot be pooled")
        others = [s for j, (s, _) in enumerate(donors) if j != i]
        within, offset = expected_score(pool(others), stats) if others else (1.0, 0.0)
        own = expected_score(stats, stats)[0] if others else 1.0
        w = within / own if own > 0 else 1.0
        medians.append(w * float(cal["median"]) + offset)
        tails.append(w * float(cal["tail"]) + offset)
        weights.append(stats.n)
        scored += int(cal.get("n", 0))
    median = float(np.average(medians, weights=weights))
    tail = max(max(tails), median * (1.0 + 1e-9) + 1e-12)
    if not (math.isfinite(median) and math.isfinite(tail)):
        raise PoolingError("donor calibrations give a non-finite prior calibration")
    return {"median": median, "tail": tail, "quantile": q0, "alarm_ratio": a0, "method": "fleet", "n": scored}


def psd(stats: GaussianStats) -> GaussianStats:
    """`stats` with its covariance projected onto the positive semi-definite matrices
    (models/private_stats.py `nearest_psd`): a pool of noised shares, made usable by a detector."""
    from models.private_stats import nearest_psd

    return GaussianStats(stats.keys, stats.n, stats.mean, nearest_psd(stats.cov), stats.shrinkage)


def bounds_from(keys, mean: np.ndarray, cov: np.ndarray, log_mask: np.ndarray, k: float) -> dict[str, list[float]]:
    """Bounds {feature: [low, high]} in the features' units: mean -/+ k standard deviations of a
    reference baseline (mean, cov in the detector's space), back-transformed (exp for log features).

    For `fleet.privacy.bounds` from a machine that does *not* share (its test bench, a spare):
    bounds from a sharing machine's own data would publish its extremes (agent/fleet_privacy.py).
    (Here, not in models/private_stats.py: it needs the gaussian's variance floor, and
    models/gaussian.py imports models/private_stats.py.)

    >>> bounds_from(["a.rms_g", "t.mean_c"], np.array([0.0, 40.0]), np.diag([0.01, 4.0]),
    ...             np.array([True, False]), 3.0)
    {'a.rms_g': [0.7408, 1.35], 't.mean_c': [34.0, 46.0]}
    """
    sd = np.sqrt(np.maximum(np.diag(cov), variance_floor(mean, log_mask)))  # a constant feature still gets a box
    out = {}
    for j, key in enumerate(keys):
        low, high = mean[j] - k * sd[j], mean[j] + k * sd[j]
        if log_mask[j]:
            low, high = math.exp(low), math.exp(high)
        out[str(key)] = [float(f"{low:.4g}"), float(f"{high:.4g}")]
    return out


def private_calibration(donors: list[tuple[GaussianStats, dict]], tail_ratio: float | None = None) -> dict:
    """The prior's calibration when the donors' shares are private (agent/fleet_privacy.py): they
    carry no median or tail of their scores, so both come from the statistics alone.

    As in `pool_calibration`, donor i is scored by the prior pooled from the others (all donors'
    statistics noised, projected by `psd`), exactly in expectation: within_i + offset_i
    (`expected_score`). Its median is taken as MEDIAN_RATIO x within_i + offset_i and its tail as
    tail_ratio x within_i + offset_i, where the ratios are those of a healthy baseline's median and
    99.9 % tail to its mean raw score (docs/federated.md gives the measurement behind the defaults).
    Median: count-weighted mean over donors; tail: the largest. Method "fleet-private".
    """
    if not donors:
        raise PoolingError("no calibration to pool")
    tail_ratio = TAIL_RATIO if tail_ratio is None else float(tail_ratio)
    if not tail_ratio > MEDIAN_RATIO:
        raise PoolingError(f"tail ratio {tail_ratio} must be above the median ratio {MEDIAN_RATIO}")
    q0, a0 = float(donors[0][1]["quantile"]), float(donors[0][1]["alarm_ratio"])
    medians, tails, weights = [], [], []
    for i, (stats, cal) in enumerate(donors):
        if float(cal["quantile"]) != q0 or float(cal["alarm_ratio"]) != a0:
            raise PoolingError("donors calibrated with different quantile or alarm_ratio cannot be pooled")
        others = [s for j, (s, _) in enumerate(donors) if j != i]
        within, offset = expected_score(psd(pool(others)) if others else stats, stats)
        medians.append(MEDIAN_RATIO * within + offset)
        tails.append(tail_ratio * within + offset)
        weights.append(stats.n)
    median = float(np.average(medians, weights=weights))
    tail = max(max(tails), median * (1.0 + 1e-9) + 1e-12)
    if not (math.isfinite(median) and math.isfinite(tail) and median > 0):
        raise PoolingError("private shares give a non-finite or zero prior calibration")
    return {"median": median, "tail": tail, "quantile": q0, "alarm_ratio": a0, "method": "fleet-private", "n": 0,
            "tail_ratio": tail_ratio}


def learned_baseline(model_state: dict, where: str = "baseline") -> tuple[dict, dict]:
    """(detector state, calibrator dict) of the baseline a streaming model learned on this
    machine (models/streaming.py `state()`): the frozen copy taken when learning ended (adaptation
    changes the running detector afterwards), else the detector itself. PoolingError while it is
    not a ready baseline learned here (learning, suspect, started from a fleet prior)."""
    if model_state.get("baseline_state") != "ready" or not model_state.get("ready"):
        raise PoolingError(f"{where}: baseline is {model_state.get('baseline_state')!r}, not ready")
    if int(model_state.get("n_learned", 0)) == 0:
        raise PoolingError(f"{where}: started from a fleet prior, not learned on this machine alone: "
                           "sharing it would count the donors twice")
    detector = model_state.get("reference") or model_state.get("detector")
    if model_state.get("calibrator") is None:
        raise PoolingError(f"{where}: no calibration")
    stats_of(detector, where)  # refuses what cannot be pooled, before anything is shared
    return detector, dict(model_state["calibrator"])
