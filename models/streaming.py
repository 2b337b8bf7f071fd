"""Learn-then-score: a detector plus its calibration and baseline lifecycle, on feature-vector time.

Life of a per-sensor model (the daemon keeps one per sensor and saves `state()` in storage.dir):

1. Learning, the first `learn_seconds` of feature-vector time (`ts`, not wall clock, so replay
   behaves like the daemon). Learning ends at the first vector whose `ts` is `learn_seconds` or
   more after the first vector's: that vector is the first one scored for alerts. There is no
   minimum number of vectors: a short span gives a short baseline, calibrated for its size
   (models/calibration.py). Each vector is scored *before* it is learned; those out-of-sample
   raw scores (minus the first `cold_start_fraction` of the phase, when a model that has seen a
   handful of vectors scores everything high) are the healthy sample for the calibration. A
   vector the caller marks `exclude=` (the agent: ISO 10816 zone C/D, implausible samples in its
   window) is scored but never learned, and counted.
2. End of learning: a change-point test (models/changepoint.py) looks for a step up in the
   scores a *probe* (the detector frozen after the cold start) gave the later windows. On a
   regime change the detector goes back to the snapshot taken before it (one every 10 % of the
   phase): only the healthy part is kept. The calibration is fitted on leave-one-out scores for
   a short baseline (at most `LOO_MAX` vectors, detectors without input context; a glitch
   window is dropped and the baseline learned again without it, `excluded.outlier`), else on
   the pool. The baseline is `suspect`, with a reason, when windows in ISO zone C/D were seen,
   when the change came too early to keep anything, or when nothing could be learned.
3. Scoring: every vector gets a calibrated score in [0, 1] and the top-3 reasons. With
   `adapt_half_life_s` set, the detector keeps learning so the baseline follows slow healthy
   drift, but only from vectors scoring below `adapt_below` (the warning level); a frozen copy of
   the learned baseline watches for drift (models/drift.py). A novelty detector (models/rarity.py:
   a fixed score map, no probe nor regime test, learns every record while adapting) is told its cadence.

Non-finite features are dropped before scoring (treated as typical) and such a vector is never learned.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from models import registry
from models.base import Detector
from models.calibration import Calibrator, glitches
from models.changepoint import regime_change
from models.clock import ObservedClock
from models.drift import DriftMonitor
from models.streaming_state import SavedState

_POOL_MAX = 20_000  # healthy raw scores kept for calibration (decimated beyond, memory stays bounded)
_REFIT_EVERY = 64  # provisional calibration while learning: refit this often (every vector below)
LOO_MAX = 64  # baselines of up to this many vectors are calibrated on leave-one-out scores
_SNAPSHOTS = 10  # detector snapshots while learning, one every 10 % of learn_seconds
EXCLUDE_SUSPECT = ("iso10816",)  # exclusion reasons that make a baseline suspect


def iso8601(ts: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-30T15:45:39.292Z (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


class StreamingModel(SavedState):
    """A detector with its baseline phase, calibration, guarded adaptation and drift watch.

    `baseline_rows`: None (the daemon) ends learning by time, `learn_seconds`. An integer N makes
    the baseline exactly the first N updates, counted, not timed (replay --train-rows N: learn on
    the head, score the rest): learning ends when update N + 1 arrives, dated at update N, with no
    regime test (the caller has said what the baseline is). `learn_seconds` then still spaces the
    cold start and the snapshots.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> m = StreamingModel(registry.create("gaussian"), learn_seconds=100.0)
    >>> out = [m.update({"ax.rms_g": float(v)}, ts=i * 0.5) for i, v in enumerate(rng.lognormal(0, 0.1, 400))]
    >>> out[199][1], out[200][1]  # ready from the first vector 100 s after the first one
    (False, True)
    >>> score, ready, reason = m.update({"ax.rms_g": 5.0}, ts=200.0)
    >>> round(score, 2), ready, reason[0][0]
    (1.0, True, 'ax.rms_g')
    >>> b = m.baseline(); b["state"], b["windows"], b["learned_at"]
    ('ready', 200, '1970-01-01T00:01:40.000Z')
    """

    learns = True  # a ScoringModel (models/base.py) that changes on the device: its state is saved

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
        drift_large_at: float = 0.9,
        drift_clear_below: float = 0.5,
        baseline_rows: int | None = None,
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
        self.drift_large_at = drift_large_at
        self.drift_clear_below = drift_clear_below
        self.baseline_rows = baseline_rows
        self._rows = 0  # update() calls, for baseline_rows
        self._row_ts: float | None = None  # ts of the last update() call
        self._blank = detector.state()  # the untrained detector, for leave-one-out refits
        self._t0: float | None = None
        self._last_ts: float | None = None
        self._clock = ObservedClock()  # learning counts observed data (models/clock.py), not ts - t0
        self._n_learned = 0
        self._n_adapted = 0
        self._pool: list[float] = []
        self._pool_ts: list[float] = []
        self._pool_probe: list[float] = []  # the same windows scored by the probe (NaN before it exists)
        self._probe: Detector | None = None  # the detector frozen at the end of the cold start
        self._pool_seen, self._stride = 0, 1
        self._recent: list | None = []  # (ts, vector) learned, while at most LOO_MAX
        self._snapshots: list[tuple[float, int, dict]] = []  # (ts, n_learned, detector state)
        self._excluded: dict[str, int] = {}
        self._calibrator: Calibrator | None = None
        self._ready = False
        self._state = "learning"
        self._reason: str | None = None
        self._learned_at: float | None = None
        self._reference: Detector | None = None  # frozen learned baseline (adaptation on)
        self._drift: DriftMonitor | None = None
        self._events: list[tuple[str, object]] = []

    @property
    def model(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def calibrator(self) -> Calibrator | None:
        return self._calibrator

    # -- the baseline, as the status topic shows it ---------------------------------------
    def baseline(self) -> dict:
        """{"state": "learning" | "ready" | "suspect", "progress": 0..1, "windows": vectors learned
        into the baseline, "learned_at": ISO 8601 | None, "reason": str | None, ...} plus
        "excluded" (vectors not learned, by reason), "calibration" and, once scoring, "drift"."""
        progress = min(1.0, self._clock.observed / self.learn_seconds) if self._state == "learning" else 1.0
        out = {"state": self._state, "progress": round(progress, 4), "windows": self._n_learned,
               "learned_at": iso8601(self._learned_at), "reason": self._reason,
               "excluded": dict(self._excluded)}
        if self._calibrator is not None:
            out["calibration"] = {"method": self._calibrator.method, "scores": self._calibrator.n}
        if self._ready:
            out["adapted"] = self._n_adapted
        if self._drift is not None:
            drift = self._drift.report()
            out["drift"] = {**drift, "detected_at": iso8601(drift["detected_at"])}
        return out

    def take_events(self) -> list[tuple[str, object]]:
        """What happened since the last call: ("learned", baseline dict) once when learning
        ends; ("drift", True | False) when a large drift starts or ends."""
        events, self._events = self._events, []
        return events

    # -- learning ---------------------------------------------------------------------------
    def _collect(self, raw: float, ts: float, x: dict[str, float]) -> None:
        # The probe: the detector frozen once the cold start is over (and it has 3 vectors); it
        # scores every later learning window, and never absorbs a new regime as the learning
        # detector does within a few windows (the regime-change test runs on its scores).
        if self._probe is None and self._n_learned >= 3 and not self.detector.novelty:
            self._probe = registry.from_state(self.detector.state())
        probe = self._probe.score(x) if self._probe is not None else math.nan
        # Keep every `stride`-th score; when full, drop every other one and double the stride.
        if self._pool_seen % self._stride == 0:
            self._pool.append(raw)
            self._pool_ts.append(ts)
            self._pool_probe.append(probe)
            if len(self._pool) >= _POOL_MAX:
                self._pool, self._pool_ts = self._pool[::2], self._pool_ts[::2]
                self._pool_probe = self._pool_probe[::2]
                self._stride *= 2
        self._pool_seen += 1
        if len(self._pool) >= 3 and (len(self._pool) <= _REFIT_EVERY or self._pool_seen % _REFIT_EVERY == 0):
            self._calibrator = Calibrator.fit(self._pool, self.quantile, self.alarm_ratio)

    def _learn(self, x: dict[str, float], ts: float) -> None:
        due = len(self._snapshots) * self.learn_seconds / _SNAPSHOTS  # one every 10 % of the phase
        if len(self._snapshots) < _SNAPSHOTS and self._clock.observed >= due and not self.detector.novelty:
            self._snapshots.append((ts, self._n_learned, self.detector.state()))
        self.detector.learn(x)
        self._n_learned += 1
        if self._recent is not None:
            self._recent.append((ts, x))
            if len(self._recent) > LOO_MAX:
                self._recent = None

    def _loo_scores(self) -> list[float]:
        """Each learned vector scored by a detector learned on all the others (n refits)."""
        vectors = [x for _, x in self._recent]
        out = []
        for i, held_out in enumerate(vectors):
            det = registry.from_state(self._blank)
            for j, x in enumerate(vectors):
                if j != i:
                    det.learn(x)
            out.append(det.score(held_out))
        return out

    def _keep_healthy_part(self, ts: float) -> None:
        """Regime change inside the learning data: roll back to the snapshot before it."""
        change = regime_change(self._pool_ts, self._pool_probe)
        if change is None:
            return
        into = 100 * (change.ts - self._t0) / max(ts - self._t0, 1e-9)
        when = f"{iso8601(change.ts)} ({into:.0f} % into learning)"
        before = [s for s in self._snapshots if s[0] <= change.ts and s[1] >= 2]
        if not before:
            self._state = "suspect"
            self._reason = (f"learning data changed regime at {when}; too little came before it to keep "
                            "as the baseline: check the machine, then `pdm-agent baseline reset`")
            return
        snap_ts, n, detector_state = before[-1]
        dropped = self._n_learned - n
        self.detector = registry.from_state(detector_state)
        self._n_learned = n
        keep = [i for i, t in enumerate(self._pool_ts) if t < snap_ts]
        self._pool = [self._pool[i] for i in keep]
        self._pool_ts = [self._pool_ts[i] for i in keep]
        self._pool_probe = [self._pool_probe[i] for i in keep]
        if self._recent is not None:
            self._recent = [(t, x) for t, x in self._recent if t < snap_ts]
        self._reason = (f"learning data changed regime at {when}: the baseline keeps the {n} windows "
                        f"before it and discards {dropped} after it")

    def _finish_learning(self, ts: float, check_regime: bool = True) -> None:
        fixed = self.detector.calibration is not None  # a fixed score map: nothing to fit, any size will do
        if check_regime and not self.detector.novelty:  # a novelty model keeps learning what is new anyway
            self._keep_healthy_part(ts)
        contextual = self.detector.contextual  # leave-one-out would break its context
        if self._recent is not None and len(self._recent) >= 3 and not contextual:
            scores = self._loo_scores()
            glitch = glitches(scores)
            if glitch.any() and (~glitch).sum() >= 3:
                # A window unlike all the others (a read across a line resync) would distort a short
                # baseline's spread on its own: learn the baseline again without it.
                self._recent = [r for r, g in zip(self._recent, glitch) if not g]
                self.detector = registry.from_state(self._blank)
                for _, x in self._recent:
                    self.detector.learn(x)
                self._n_learned = len(self._recent)
                self._excluded["outlier"] = self._excluded.get("outlier", 0) + int(glitch.sum())
                scores = self._loo_scores()
        else:
            scores = self._pool
        finite = [s for s in scores if math.isfinite(s)]
        self._calibrator = Calibrator.fit(finite, self.quantile, self.alarm_ratio) if finite else None
        suspect = {k: v for k, v in self._excluded.items() if k in EXCLUDE_SUSPECT and v}
        if self._state != "suspect":
            if self._n_learned == 0 or (self._calibrator is None and not fixed):
                self._state = "suspect"
                self._reason = (f"{self._n_learned} window(s) learned: too few to score against; raise "
                                "detector.learn_seconds or check the sensor, then `pdm-agent baseline reset`")
            elif suspect:
                self._state = "suspect"
                self._reason = (f"{sum(suspect.values())} window(s) during learning were in ISO 10816-3 zone C/D "
                                "and were not learned: the machine may not have been healthy")
            else:
                self._state = "ready"
        self._pool, self._pool_ts, self._pool_probe, self._recent, self._snapshots = [], [], [], None, []
        self._probe = None
        self._ready = self._calibrator is not None or (fixed and self._n_learned > 0)
        if self._n_learned:  # models/rarity.py keeps a rate-aware history; a no-op for the others
            self.detector.set_cadence(self._clock.observed / self._n_learned)
        self._learned_at = ts
        if self.adapt_half_life_s and self.detector.adaptive and self._n_learned:
            # The detector counts in vectors; convert with the rate seen while learning.
            rate = self._n_learned / max(self._clock.observed, 1e-9)
            self._reference = registry.from_state(self.detector.state())
            self.detector.half_life = self.adapt_half_life_s * rate
        if self._ready and self._reference is not None:
            self._drift = DriftMonitor(self.drift_large_at, self.drift_clear_below)
        self._events.append(("learned", self.baseline()))

    def finish_learning(self, ts: float) -> None:
        """End the learning phase now, whatever `learn_seconds` says. The caller has said what
        the baseline is, so no regime change is looked for. No-op when already scoring."""
        if self._state == "learning":
            if self._t0 is None:
                self._t0 = ts
            self._finish_learning(ts, check_regime=False)

    # -- every vector ------------------------------------------------------------------------
    def update(self, x: dict[str, float], ts: float,
               exclude: str | None = None) -> tuple[float, bool, list[tuple[str, float, float]]]:
        """Score one feature vector, then learn it when allowed (never with `exclude`, a reason:
        "iso10816", "implausible"). Returns (score in [0, 1], ready, top-3 (feature, value, contribution))."""
        if self.baseline_rows is not None and self._rows >= self.baseline_rows:
            self.finish_learning(self._row_ts)  # the baseline was the rows before this one
        self._rows += 1
        self._row_ts = ts
        finite = {k: float(v) for k, v in x.items() if v is not None and math.isfinite(v)}
        if not finite:
            return 0.0, self._ready, []
        complete = len(finite) == len(x)
        if self._t0 is None:
            self._t0 = ts
        self._last_ts = ts
        observed = self._clock.advance(ts) if self._state == "learning" else 0.0
        if self._state == "learning" and observed >= self.learn_seconds and self.baseline_rows is None:
            self._finish_learning(ts)

        raw = self.detector.score(finite)
        cal = self.detector.calibration or self._calibrator  # a fixed map (models/base.py), or fitted
        score01 = cal(raw) if cal is not None else 0.0
        contrib = self.detector.explain(finite)
        top = sorted(contrib.items(), key=lambda kv: kv[1], reverse=True)[:3]
        reason = [(k, finite[k], round(c, 4)) for k, c in top]

        if self._state == "learning":
            if exclude:
                self._excluded[exclude] = self._excluded.get(exclude, 0) + 1
            elif complete:
                if self._clock.observed >= self.cold_start_fraction * self.learn_seconds:
                    self._collect(raw, ts, finite)
                self._learn(finite, ts)
        else:
            # Adaptation on: a novelty model learns every record; off (null, replay --train-rows N) freezes all.
            learn = self.adapt_half_life_s and (self.detector.novelty or score01 < self.adapt_below)
            if complete and not exclude and learn:
                self.detector.learn(finite)
                self._n_adapted += 1
            if self._drift is not None:
                ref = self._calibrator(self._reference.score(finite))
                event = self._drift.update(ref, ts)
                if event is not None:
                    self._events.append(("drift", event))
        self.detector.observe(finite)  # input context (models/pca.py smoothing) sees every row
        if self.detector.contextual and self._probe is not None and self._state == "learning":
            self._probe.observe(finite)
        if self._reference is not None:
            self._reference.observe(finite)
        return score01, self._ready, reason
