"""Learn-then-score: a detector plus its calibration, driven by feature-vector time.

Life of a per-sensor model (the daemon keeps one per sensor and saves `state()` in storage.dir):

1. Learning, the first `learn_seconds` of feature-vector time (`ts`, not wall clock, so replay
   behaves like the daemon). Each vector is scored *before* it is learned; those raw scores,
   minus the first `cold_start_fraction` of the phase (a model that has seen a handful of
   vectors scores everything high), are the healthy sample the calibrator is fitted on. Scores
   are returned with `ready=False`: shown, never alerted on.
2. Scoring: every vector gets a calibrated score in [0, 1] and the top-3 reasons. With
   `adapt_half_life_s` set, the detector keeps learning so the baseline follows slow healthy
   drift, but only from vectors scoring below `adapt_below` (the warning level): a developing
   fault must never be absorbed into "healthy".

Non-finite features are dropped before scoring (the detector treats them as typical) and such
a vector is never learned, so one NaN cannot poison the baseline.
"""

from __future__ import annotations

import math

import numpy as np

from models import registry
from models.base import Detector
from models.calibration import Calibrator

_MIN_LEARNED = 30  # the baseline is not ready before this many vectors, whatever learn_seconds says
_POOL_MAX = 20_000  # healthy raw scores kept for calibration (decimated beyond, memory stays bounded)
_REFIT_EVERY = 64  # provisional calibration while learning: refit this often


class StreamingModel:
    """A detector with its baseline phase, calibration and guarded adaptation.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> m = StreamingModel(registry.create("gaussian"), learn_seconds=100.0)
    >>> out = [m.update({"ax.rms_g": float(v)}, ts=i * 0.5) for i, v in enumerate(rng.lognormal(0, 0.1, 400))]
    >>> out[100][1], out[300][1]
    (False, True)
    >>> score, ready, reason = m.update({"ax.rms_g": 5.0}, ts=200.0)
    >>> round(score, 2), ready, reason[0][0]
    (1.0, True, 'ax.rms_g')
    """

    def __init__(
        self,
        detector: Detector,
        learn_seconds: float,
        adapt_half_life_s: float | None = None,
        name: str | None = None,
        version: str | None = None,
        quantile: float = 0.999,
        alarm_ratio: float = 4.0,
        adapt_below: float = 0.5,
        cold_start_fraction: float = 0.2,
    ) -> None:
        self.detector = detector
        self.learn_seconds = learn_seconds
        self.adapt_half_life_s = adapt_half_life_s
        self.name = name or detector.name
        self.version = version or detector.version
        self.quantile = quantile
        self.alarm_ratio = alarm_ratio
        self.adapt_below = adapt_below
        self.cold_start_fraction = cold_start_fraction
        self._t0: float | None = None
        self._n_learned = 0
        self._pool: list[float] = []
        self._pool_seen = 0
        self._stride = 1
        self._calibrator: Calibrator | None = None
        self._ready = False

    @property
    def model(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def calibrator(self) -> Calibrator | None:
        return self._calibrator

    def _collect(self, raw: float) -> None:
        # Keep every `stride`-th score; when full, drop every other one and double the stride.
        if self._pool_seen % self._stride == 0:
            self._pool.append(raw)
            if len(self._pool) >= _POOL_MAX:
                self._pool = self._pool[::2]
                self._stride *= 2
        self._pool_seen += 1
        if len(self._pool) >= _MIN_LEARNED and self._pool_seen % _REFIT_EVERY == 0:
            self._calibrator = Calibrator.fit(self._pool, self.quantile, self.alarm_ratio)

    def _finish_learning(self, ts: float) -> None:
        if self._pool:
            self._calibrator = Calibrator.fit(self._pool, self.quantile, self.alarm_ratio)
        self._pool = []
        self._ready = True
        if self.adapt_half_life_s and hasattr(self.detector, "half_life"):
            # The detector counts in vectors; convert with the rate seen while learning.
            rate = self._n_learned / max(ts - self._t0, 1e-9)
            self.detector.half_life = self.adapt_half_life_s * rate

    def finish_learning(self, ts: float) -> None:
        """End the learning phase now, whatever `learn_seconds` says (replay's --train-rows N:
        the baseline is the first N records, counted, not timed). No-op when already scoring."""
        if not self._ready:
            if self._t0 is None:
                self._t0 = ts
            self._finish_learning(ts)

    def update(self, x: dict[str, float], ts: float) -> tuple[float, bool, list[tuple[str, float, float]]]:
        """Score one feature vector (then learn it when allowed).

        Returns (calibrated score in [0, 1], ready, top-3 reasons as (feature, value, contribution)).
        """
        finite = {k: float(v) for k, v in x.items() if v is not None and math.isfinite(v)}
        if not finite:
            return 0.0, self._ready, []
        complete = len(finite) == len(x)
        if self._t0 is None:
            self._t0 = ts
        if not self._ready and ts - self._t0 >= self.learn_seconds and self._n_learned >= _MIN_LEARNED:
            self._finish_learning(ts)

        raw = self.detector.score(finite)
        fixed = self.detector.calibration
        if fixed is not None:  # a surprise with one meaning on every stream: nothing to fit
            score01 = fixed(raw)
        else:
            score01 = self._calibrator(raw) if self._calibrator is not None else 0.0
        contrib = self.detector.explain(finite)
        top = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)[:3]
        reason = [(k, finite[k], round(c, 4)) for k, c in top]

        if not self._ready:
            if complete:
                if ts - self._t0 >= self.cold_start_fraction * self.learn_seconds:
                    self._collect(raw)
                self.detector.learn(finite)
                self._n_learned += 1
        elif complete and (self.detector.novelty or (self.adapt_half_life_s and score01 < self.adapt_below)):
            self.detector.learn(finite)  # a novelty model learns every record (models/base.py)
            self._n_learned += 1
        observe = getattr(self.detector, "observe", None)
        if observe is not None:  # detectors with input context (models/pca.py smoothing) see every row
            observe(finite)
        return score01, self._ready, reason

    def state(self) -> dict:
        """JSON-serialisable; `from_state` restores a model that scores identically."""
        return {
            "format": 1,
            "name": self.name,
            "version": self.version,
            "learn_seconds": self.learn_seconds,
            "adapt_half_life_s": self.adapt_half_life_s,
            "quantile": self.quantile,
            "alarm_ratio": self.alarm_ratio,
            "adapt_below": self.adapt_below,
            "cold_start_fraction": self.cold_start_fraction,
            "t0": self._t0,
            "n_learned": self._n_learned,
            "pool": self._pool,
            "pool_seen": self._pool_seen,
            "stride": self._stride,
            "calibrator": None if self._calibrator is None else self._calibrator.to_dict(),
            "ready": self._ready,
            "detector": self.detector.state(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "StreamingModel":
        if state.get("format") != 1:
            raise ValueError(f"unsupported streaming-model state format {state.get('format')!r}")
        m = cls(
            registry.from_state(state["detector"]),
            learn_seconds=state["learn_seconds"],
            adapt_half_life_s=state["adapt_half_life_s"],
            name=state["name"],
            version=state["version"],
            quantile=state["quantile"],
            alarm_ratio=state["alarm_ratio"],
            adapt_below=state["adapt_below"],
            cold_start_fraction=state["cold_start_fraction"],
        )
        m._t0 = state["t0"]
        m._n_learned = int(state["n_learned"])
        m._pool = [float(s) for s in state["pool"]]
        m._pool_seen = int(state["pool_seen"])
        m._stride = int(state["stride"])
        m._calibrator = None if state["calibrator"] is None else Calibrator.from_dict(state["calibrator"])
        m._ready = bool(state["ready"])
        return m
