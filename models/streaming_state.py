"""The saved form of models/streaming.StreamingModel: `state()` and `from_state()`, kept apart
from the learning and scoring code so the format can be read in one place.

Format 2 holds the whole baseline lifecycle (pool, probe, snapshots, drift watch); format 1
(saved before the baseline lifecycle existed) loads as a ready baseline whose learning time is
unknown. The daemon writes `state()` to storage.dir/models/<sensor>.json (agent/pipeline.py).
"""

from __future__ import annotations

import math

from models import registry
from models.calibration import Calibrator
from models.clock import ObservedClock
from models.drift import DriftMonitor


class SavedState:
    """`state()` / `from_state()` of StreamingModel (its base class: the fields are its own)."""

    def state(self) -> dict:
        """JSON-serialisable; `from_state` restores a model that scores identically."""
        return {
            "format": 2,
            "name": self.name, "version": self.version,
            "learn_seconds": self.learn_seconds, "adapt_half_life_s": self.adapt_half_life_s,
            "quantile": self.quantile, "alarm_ratio": self.alarm_ratio, "adapt_below": self.adapt_below,
            "cold_start_fraction": self.cold_start_fraction,
            "drift_large_at": self.drift_large_at, "drift_clear_below": self.drift_clear_below,
            "t0": self._t0, "last_ts": self._last_ts, "clock": self._clock.state(),
            "n_learned": self._n_learned, "n_adapted": self._n_adapted,
            "pool": self._pool, "pool_ts": self._pool_ts, "pool_seen": self._pool_seen, "stride": self._stride,
            "pool_probe": [None if math.isnan(v) else v for v in self._pool_probe],
            "probe": None if self._probe is None else self._probe.state(),
            "recent": None if self._recent is None else [[t, x] for t, x in self._recent],
            "snapshots": [list(s) for s in self._snapshots],
            "excluded": self._excluded,
            "calibrator": None if self._calibrator is None else self._calibrator.to_dict(),
            "ready": self._ready, "baseline_state": self._state, "reason": self._reason,
            "learned_at": self._learned_at, "blank": self._blank, "detector": self.detector.state(),
            "reference": None if self._reference is None else self._reference.state(),
            "drift": None if self._drift is None else self._drift.state(),
            "baseline_rows": self.baseline_rows, "rows": self._rows, "row_ts": self._row_ts,
        }

    @classmethod
    def from_state(cls, state: dict) -> "StreamingModel":
        """Restore a saved model; format 1 (before baseline lifecycle) loads as a ready baseline
        whose learning time is unknown. ValueError for an unknown format."""
        fmt = state.get("format")
        if fmt not in (1, 2):
            raise ValueError(f"unsupported streaming-model state format {fmt!r}")
        m = cls(
            registry.from_state(state["detector"]),
            learn_seconds=state["learn_seconds"], adapt_half_life_s=state["adapt_half_life_s"],
            name=state["name"], version=state["version"], quantile=state["quantile"],
            alarm_ratio=state["alarm_ratio"], adapt_below=state["adapt_below"],
            cold_start_fraction=state["cold_start_fraction"],
            drift_large_at=state.get("drift_large_at", 0.9), drift_clear_below=state.get("drift_clear_below", 0.5),
            baseline_rows=state.get("baseline_rows"),
        )
        m._rows, m._row_ts = int(state.get("rows", 0)), state.get("row_ts")
        m._t0, m._n_learned, m._pool_seen = state["t0"], int(state["n_learned"]), int(state["pool_seen"])
        m._pool, m._stride = [float(s) for s in state["pool"]], int(state["stride"])
        m._calibrator = None if state["calibrator"] is None else Calibrator.from_dict(state["calibrator"])
        m._ready = bool(state["ready"])
        if fmt == 1:
            m._state = "ready" if m._ready else "learning"
            m._recent = None if m._ready else []
            m._pool_ts = [m._t0 or 0.0] * len(m._pool)  # unknown: no regime test on this pool
            m._pool_probe = [math.nan] * len(m._pool)
            return m
        m._last_ts, m._n_adapted = state["last_ts"], int(state["n_adapted"])
        m._clock = ObservedClock.from_state(state.get("clock"), m._last_ts)
        m._pool_ts = [float(t) for t in state["pool_ts"]]
        m._pool_probe = [math.nan if v is None else float(v) for v in state["pool_probe"]]
        m._probe = None if state["probe"] is None else registry.from_state(state["probe"])
        m._recent = None if state["recent"] is None else [(float(t), dict(x)) for t, x in state["recent"]]
        m._snapshots = [(float(t), int(n), dict(d)) for t, n, d in state["snapshots"]]
        m._excluded = {str(k): int(v) for k, v in state["excluded"].items()}
        m._state, m._reason, m._learned_at = state["baseline_state"], state["reason"], state["learned_at"]
        m._blank = state["blank"]
        m._reference = None if state["reference"] is None else registry.from_state(state["reference"])
        if state["drift"] is not None:
            m._drift = DriftMonitor(m.drift_large_at, m.drift_clear_below)
            m._drift.restore(state["drift"])
        return m
