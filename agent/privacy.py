"""Differential privacy on published aggregates (`aggregates.privacy`), with OpenDP's mechanisms.

What is protected (docs/privacy.md): one window. Two data sets are neighbours when one window's
feature vector is replaced by any other; an aggregate released with `epsilon` lets nobody tell
which of two neighbours it came from beyond a factor e^epsilon (plus `delta` for Gaussian).
A window lies in one interval only, so the guarantee per window holds for the whole stream
(parallel composition); it says nothing about a property shared by many windows (a machine's
speed for a whole day), which aggregates are meant to show.

Each feature is clipped to its declared bounds [L, U] (from the config, never from the data: bounds
taken from the learned baseline would publish the baseline's extremes). For n windows:

* mean: sensitivity (U - L) / n;  min and max: sensitivity (U - L) (one window can move them across
  the whole range). The count n is published exactly: it is set by the sample rate and hop.
* The aggregate's 3k statistics (k published features incl. the score, bounds [0, 1]) are divided by
  their sensitivities and released at once by one OpenDP vector measurement: Laplace with L1
  distance 3k (scale b = 3k / epsilon, i.e. epsilon split evenly; Dwork & Roth 2014, Thm 3.6), or
  Gaussian with L2 distance sqrt(3k), its zCDP converted to (epsilon, delta) by OpenDP
  (Bun & Steinke 2016; Canonne, Kamath & Steinke 2020). The noisy values are multiplied back and
  clamped to [L, U] (post-processing costs no privacy).

OpenDP samples on exact arithmetic (discrete Laplace / Gaussian on a 2^k grid, so no
floating-point leak, Mironov 2012) from the operating system's secure random source. It is
imported only when `aggregates.privacy` is set (it adds ~130 MiB RSS; docs/BENCHMARKS.md).
Features without bounds are not published (logged once per sensor); the score always is.
"""

from __future__ import annotations

import importlib.util
import math
from fnmatch import fnmatchcase
from typing import Any, Callable, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

SCORE_BOUNDS = (0.0, 1.0)  # the score is in [0, 1] by definition: a bound that does not depend on data
EXTRA = "pip install 'pdm-agent[privacy]'"
STATISTICS = ("mean", "min", "max")


def _rule(at: tuple, message: str) -> PydanticCustomError:
    return PydanticCustomError("config_rule", message.replace("{", "(").replace("}", ")"), {"at": at})


class PrivacyConfig(BaseModel):
    """`aggregates.privacy`: epsilon per aggregate, mechanism, and clipping bounds per feature."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    epsilon: float = Field(gt=0, le=100, description="privacy loss per aggregate message for one window")
    mechanism: Literal["laplace", "gaussian"] = Field("laplace", description="gaussian needs delta")
    delta: Optional[float] = Field(None, gt=0, le=1e-3, description="gaussian only: failure probability")
    bounds: dict[str, tuple[float, float]] = Field(
        description="feature name or pattern -> [low, high] in the feature's unit; features without bounds "
                    "are not published; score defaults to [0, 1]")

    @model_validator(mode="before")
    @classmethod
    def _bounds_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("bounds"):
            raise _rule(("bounds",), "required with privacy: clipping bounds per feature, {name or pattern: "
                        "[low, high]} in the feature's unit (e.g. '*.rms_g': [0, 4]). Noise is calibrated to "
                        "them, so they must be declared, not taken from the data")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PrivacyConfig:
        if self.mechanism == "gaussian" and self.delta is None:
            raise _rule(("delta",), "the gaussian mechanism needs delta (e.g. 1e-6); or use mechanism: laplace")
        if self.mechanism == "laplace" and self.delta is not None:
            raise _rule(("delta",), "delta applies to the gaussian mechanism only; remove it or set mechanism: gaussian")
        for name, (low, high) in self.bounds.items():
            if not low < high:
                raise _rule(("bounds", name), f"low must be below high (got [{low:g}, {high:g}])")
        if importlib.util.find_spec("opendp") is None:
            raise _rule((), f"needs the OpenDP library, which is not installed: {EXTRA}")
        return self

    def bounds_of(self, name: str) -> tuple[float, float] | None:
        """[low, high] for a feature: its exact name, else the first matching pattern; score [0, 1].

        >>> PrivacyConfig(epsilon=1, bounds={"*.rms_g": (0, 4), "ax.rms_g": (0, 2)}).bounds_of("ax.rms_g")
        (0.0, 2.0)
        >>> PrivacyConfig(epsilon=1, bounds={"*.rms_g": (0, 4)}).bounds_of("score")
        (0.0, 1.0)
        """
        if name in self.bounds:
            return tuple(map(float, self.bounds[name]))
        for pattern, bound in self.bounds.items():
            if fnmatchcase(name, pattern):
                return tuple(map(float, bound))
        return SCORE_BOUNDS if name == "score" else None


def measurement(dp, mechanism: str, epsilon: float, delta: float | None, size: int, d_in: float):
    """(OpenDP measurement, its noise scale) releasing a float vector of `size` whose sensitivity is
    `d_in` (L1 for laplace, L2 for gaussian) with `epsilon` (and `delta`): the smallest scale that
    satisfies it, found by OpenDP's binary search. `dp` is `opendp.prelude`, contrib enabled."""
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=size)
    if mechanism == "laplace":
        def make(s):
            return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=s)
        d_out = epsilon
    else:
        def make(s):
            gauss = dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=s)
            return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gauss), delta=delta)
        d_out = (epsilon, delta)
    scale = dp.binary_search_param(make, d_in=d_in, d_out=d_out)
    return make(scale), scale


class Privatizer:
    """Releases one interval's statistics with noise (module docstring); one per agent."""

    def __init__(self, cfg: PrivacyConfig, log=None) -> None:
        import opendp.prelude as dp  # heavy (module docstring): only when privacy is configured
        from importlib.metadata import version

        dp.enable_features("contrib")
        self.cfg = cfg
        self.log = log
        self._dp = dp
        self.library = f"opendp {version('opendp')}"
        self._measurements: dict[int, tuple[Any, float]] = {}  # statistics -> (measurement, scale)
        self._told: set[tuple[str, tuple]] = set()

    def scale(self, statistics: int) -> float:
        """Noise scale in units of each statistic's sensitivity for `statistics` values at once."""
        return self._measurement(statistics)[1]

    def _measurement(self, statistics: int):
        if statistics not in self._measurements:
            cfg = self.cfg
            d_in = float(statistics) if cfg.mechanism == "laplace" else math.sqrt(statistics)
            self._measurements[statistics] = measurement(self._dp, cfg.mechanism, cfg.epsilon, cfg.delta,
                                                         statistics, d_in)
        return self._measurements[statistics]

    def block(self, bounds: dict[str, tuple[float, float]]) -> dict:
        """The `privacy` object every published aggregate carries."""
        out = {"mechanism": self.cfg.mechanism, "epsilon": self.cfg.epsilon}
        if self.cfg.delta is not None:
            out["delta"] = self.cfg.delta
        out.update({"unit": "window", "bounds": {k: [lo, hi] for k, (lo, hi) in bounds.items()},
                    "library": self.library})
        return out

    def release(self, sensor: str, names: list[str], data: np.ndarray | None,
                keep: Callable[[str], bool]) -> tuple[dict, dict]:
        """(features, privacy block) for one interval: `data` is n rows x len(names) (None: no window).

        Returns features as {name: {"mean", "min", "max"}} with noise, each within its bounds.
        """
        if data is None or not len(data):
            return {}, self.block({})
        chosen, unbounded = [], []
        for i, name in enumerate(names):
            if not keep(name):
                continue
            bound = self.cfg.bounds_of(name)
            (chosen.append((i, name, bound)) if bound is not None else unbounded.append(name))
        self._tell(sensor, unbounded)
        n = len(data)
        values, sens, limits = [], [], []
        for i, _name, (low, high) in chosen:
            col = np.nan_to_num(data[:, i], nan=(low + high) / 2)  # a missing value is one more window value
            col = np.clip(col, low, high)
            width = high - low
            values += [float(col.mean()), float(col.min()), float(col.max())]
            sens += [width / n, width, width]
            limits += [(low, high)] * 3
        sens_arr = np.asarray(sens)
        measurement, _ = self._measurement(len(values))
        noisy = np.asarray(measurement(list(np.asarray(values) / sens_arr))) * sens_arr
        features = {}
        for j, (_i, name, (low, high)) in enumerate(chosen):
            got = [min(max(float(v), low), high) for v in noisy[3 * j:3 * j + 3]]
            features[name] = dict(zip(STATISTICS, got))
        return features, self.block({name: bound for _i, name, bound in chosen})

    def _tell(self, sensor: str, unbounded: list[str]) -> None:
        key = (sensor, tuple(unbounded))
        if unbounded and key not in self._told and self.log:
            self._told.add(key)
            self.log.warning("aggregates.privacy: features without bounds are not published", sensor=sensor,
                             count=len(unbounded), features=", ".join(unbounded[:20]) + (" ..." if len(unbounded) > 20 else ""))


def unpublished(cfg) -> list[tuple[tuple, str]]:
    """`config check` warnings: per sensor, the features privacy will not publish for want of bounds."""
    from models.features import FeatureSpec, feature_names

    p = cfg.aggregates.privacy
    if p is None:
        return []
    patterns = cfg.aggregates.features
    out = []
    for sensor in cfg.sensors:
        try:
            names = feature_names(FeatureSpec.of_sensor(sensor))
        except Exception:  # a sensor whose features are known only at run time: the agent logs them then
            continue
        missing = [n for n in names if (patterns is None or any(fnmatchcase(n, q) for q in patterns))
                   and p.bounds_of(n) is None]
        if missing:
            out.append((("aggregates", "privacy", "bounds"),
                        f"{len(missing)} of sensor {sensor.name}'s features have no bounds and are not published: "
                        f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"))
    return out
