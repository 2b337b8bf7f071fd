"""Per-sensor pipeline: frames -> windows -> features -> detector -> alert policy; aggregator.

Data flows one way. `process(frame)` runs the waveform front end (windowing and feature
extraction) and hands every feature vector to `handle(vector)`, which scores it, applies
the alert policy and feeds the aggregator. Replay of pre-computed, low-rate records enters
at `handle()` directly, so live and offline runs share everything after the features.
Everything produced leaves through `emit` (the outbox, or a CSV writer in replay).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable

from agent import iso10816, sealed, sensor_health
from agent.aggregates import Aggregator
from agent.diagnosis import SensorDiagnosis, diagnosis_text
from agent.alert_state import condition
from models.features import FeatureSpec, extract
from agent.log_summary import LearningLog, summary_fields
from agent.policy import AlertPolicy, PolicyConfig
from agent.records import Aggregate, Alert, FeatureVector, Frame, Score
from drivers.base import VALUES, driver_for
from agent.windowing import Windower
from models.streaming import StreamingModel

Emit = Callable[[Alert | Aggregate], None]


def build_model(detector_cfg, alerts_cfg=None, clip=None, **options):
    """The streaming model (detector + calibration) a sensor's `detector:` section asks for; the
    `alerts:` section's levels also say when baseline drift is large (its mean score against the
    learned baseline at the alarm level) and when that ends (below the warning level). `clip`:
    the gaussian detector's bounds for private fleet shares (agent/fleet_privacy.py). `options`
    are StreamingModel keywords that replace the section's (replay: `baseline_rows`, ...)."""
    from models.registry import create

    agent = {"clip": clip} if clip is not None else None  # only a gaussian: config check refuses the others
    detector = create(detector_cfg.type, agent_params=agent, **dict(detector_cfg.params))
    drift = {} if alerts_cfg is None else {"drift_large_at": alerts_cfg.alarm,
                                           "drift_clear_below": alerts_cfg.warning}
    settings = {"learn_seconds": detector_cfg.learn_seconds, "adapt_half_life_s": detector_cfg.adapt_half_life_s}
    return StreamingModel(detector, **{**settings, **drift, **options})


BUNDLE_BASELINE = {"state": "ready", "progress": 1.0, "windows": 0, "learned_at": None,
                   "reason": "a signed model bundle scores this sensor: nothing is learned on the device"}


@dataclass
class SensorStats:
    """Counters of one sensor's pipeline, shown in the status document."""

    frames: int = 0
    samples: int = 0
    windows: int = 0
    alerts: int = 0
    last_score: float | None = None
    last_window_ts: float | None = None


class SensorPipeline:
    """One sensor's stages after the driver (module docstring). `on_baseline(sensor, baseline)`
    is called once when the sensor's baseline finishes learning (the service republishes its
    status); the end of learning is also one log line."""

    def __init__(self, *, device: str, sensor_cfg, aggregate_interval: float, emit: Emit, model=None, log=None,
                 on_baseline: Callable[[str, dict], None] | None = None, clip: dict | None = None) -> None:
        self.device = device
        self.sensor = sensor_cfg.name
        self.cfg = sensor_cfg
        self.rate = float(sensor_cfg.sample_rate)
        channels = tuple(sensor_cfg.channels)
        self.spec = FeatureSpec.of_sensor(sensor_cfg)
        size = sensor_cfg.window.size
        self.hop = sensor_cfg.window.hop or size
        self.size = size
        self.windower = Windower(size, self.hop, len(channels))
        self.clip = clip  # learned windows are also summed clipped, for private fleet shares
        self.model = model if model is not None else build_model(sensor_cfg.detector, sensor_cfg.alerts, clip)
        self.on_baseline = on_baseline
        self._taint = (0, 0)  # windows ending strictly between these sample indexes span rejected samples
        a = sensor_cfg.alerts
        self.policy = AlertPolicy(
            PolicyConfig(a.warning, a.alarm, a.debounce_n, a.debounce_m, a.hysteresis),
            device=device, sensor=self.sensor,
        )
        self.aggregator = Aggregator(device, self.sensor, aggregate_interval)
        self.iso = iso10816.from_sensor_config(sensor_cfg, device)  # physics check, needs no baseline
        self.sensor_health = sensor_health.from_sensor_config(sensor_cfg)
        # The front end is picked once from the driver's declared kind: values skip the windowing.
        self._values = driver_for(sensor_cfg.protocol).kind == VALUES
        self.emit = emit
        self.log = log
        self.stats = SensorStats()
        self.learning_log = LearningLog(log, self.sensor, sensor_cfg.detector.learn_seconds)
        self.diagnosis = SensorDiagnosis.from_sensor_config(sensor_cfg, log)  # inert without `machine:`
        self.sealer = None  # agent/sealed.py Sealer when storage.encrypt is on (set by the service)
        self.refused: dict | None = None  # a saved baseline refused at start (tampered): in the status

    # -- waveform front end -------------------------------------------------------------
    def process(self, frame: Frame | FeatureVector) -> list[Score]:
        """Window, featurize and score a frame; returns the Score of every window it completed
        (replay of raw waveform CSVs records them; the daemon ignores them)."""
        if self._values:  # a transmitter's values (the driver's kind): features already
            return [self.handle(frame)]
        scores = []
        k = len(frame.samples)
        self.stats.frames += 1
        self.stats.samples += k
        if frame.rejected:
            # Samples were removed just before or inside this block: every window holding any of
            # its samples or the one before it spans the gap (window ending at e holds [e-size, e)).
            lo, hi = self.stats.samples - k - 1, self.stats.samples + self.size
            self._taint = (min(lo, self._taint[0]), hi) if lo < self._taint[1] else (lo, hi)
        windows = self.windower.push(frame.samples)
        for window in windows:
            # The j-th window overall ends at sample size + j*hop; date it from the frame's end.
            end = self.size + self.stats.windows * self.hop
            ts = frame.t_end - (self.stats.samples - end) / self.rate
            self.stats.windows += 1
            tainted = self._taint[0] < end < self._taint[1]
            self.diagnosis.keep(window)
            scores.append(self.handle(FeatureVector(self.sensor, ts, extract(window, self.spec)),
                                      exclude="implausible" if tainted else None))
        return scores

    # -- everything after the features --------------------------------------------------
    def handle(self, vector: FeatureVector, exclude: str | None = None) -> Score:
        """Score one feature vector, raise alerts, aggregate. `exclude`: why this vector must not
        enter the learned baseline (set by `process` for windows holding implausible samples);
        vectors in ISO 10816 zone C/D are never learned either."""
        iso_alert = self.iso.update(vector)
        if self.iso.zone_of(vector) in ("C", "D"):
            exclude = "iso10816"
        value, ready, reason = self.model.update(vector.values, vector.ts, exclude=exclude)
        events = self.model.take_events()
        score = Score(self.sensor, vector.ts, value, ready, self.model_name, tuple(reason))
        self.stats.last_score = value
        self.stats.last_window_ts = vector.ts
        self._show(vector, score)
        self.learning_log.update(vector.ts, ready)
        self.sensor_health.observe(vector.values)
        alerts = [self.policy.update(score), iso_alert]
        alerts[0] = self.diagnosis.attach(alerts[0])
        for kind, event in events:
            if kind == "learned":
                self._announce(event)
            elif kind == "drift":
                alerts.append(self._drift_alert(vector.ts, bool(event)))
        for alert in alerts:
            if alert is None:
                continue
            self.stats.alerts += 1
            if self.log:
                self.log.warning(
                    f"alert {alert.level}", sensor=self.sensor, kind=alert.kind, score=round(alert.score, 3),
                    threshold=alert.threshold, id=alert.id,
                    reason=", ".join(f"{f}={v:.4g}" for f, v, _ in alert.reason),
                    **({"diagnosis": diagnosis_text(alert.diagnosis)} if alert.diagnosis else {}),
                )
            self.emit(alert)
        for aggregate in self.aggregator.add(vector, value):
            self._publish(aggregate)
        return score

    # -- the baseline --------------------------------------------------------------------
    def baseline(self) -> dict:
        """The status topic's `sensors.<name>.baseline` (models/streaming.py `baseline()`)."""
        baseline = self.model.baseline()
        if baseline is None:
            return dict(BUNDLE_BASELINE)
        return {**baseline, **({"refused": self.refused} if self.refused else {})}  # a tampered file, at start

    def reset_baseline(self) -> bool:
        """Forget the learned baseline and learn anew from the next window (after maintenance).
        False when the sensor runs a signed bundle (nothing learned on the device to forget)."""
        if self.model.baseline() is None:
            return False
        self.model = build_model(self.cfg.detector, self.cfg.alerts, self.clip)
        self._taint, self.refused = (0, 0), None
        if self.log:
            self.log.warning("baseline reset: learning a new baseline", sensor=self.sensor,
                             learn_seconds=self.cfg.detector.learn_seconds)
        return True

    def _announce(self, baseline: dict) -> None:
        if self.log:
            say = self.log.warning if baseline["state"] == "suspect" else self.log.info
            say("baseline learned", sensor=self.sensor, state=baseline["state"], windows=baseline["windows"],
                learned_at=baseline["learned_at"], calibration=(baseline.get("calibration") or {}).get("method"),
                excluded=baseline["excluded"], reason=baseline["reason"])
        if self.on_baseline is not None:
            self.on_baseline(self.sensor, baseline)

    def _drift_alert(self, ts: float, large: bool) -> Alert:
        drift = self.model.baseline().get("drift") or {}
        level = drift.get("level", 0.0)
        return Alert(
            ts=ts, device=self.device, sensor=self.sensor, level="warning" if large else "clear",
            score=float(level), threshold=self.cfg.alerts.alarm, model=self.model_name,
            reason=(("baseline drift: mean score against the baseline learned at "
                     f"{self.model.baseline()['learned_at']}", float(level), 1.0),), kind="drift",
        )

    def tick(self, now: float) -> None:
        """Publish the aggregates whose interval is over, also when no window arrived in it."""
        for aggregate in self.aggregator.flush(now):
            self._publish(aggregate)

    def _publish(self, aggregate: Aggregate) -> None:
        """Emit an aggregate, and say at info what its interval looked like (one line per
        sensor per interval: the journal's heartbeat of the machine)."""
        self.emit(aggregate)
        if self.log:
            level = condition({"anomaly": self.policy.level, "iso10816": self.iso.state()["level"]})
            self.log.info("summary", **summary_fields(aggregate, level, bool(self.model.ready)))

    @property
    def model_name(self) -> str:
        return f"{self.model.name}@{self.model.version}"

    def _show(self, vector: FeatureVector, score: Score) -> None:
        """One debug line per window (`logging.level: debug`); at info, `summary` lines."""
        if not self.log:
            return
        v = vector.values
        shown = {
            k.replace(".", "_"): round(val, 3)
            for k, val in v.items()
            if k.endswith(("velocity_rms_mm_s", "kurtosis", "mean_c"))
        }
        b = self.baseline()
        state = b["state"] if b["state"] != "learning" else f"learning {100 * b['progress']:.0f}%"
        self.log.debug("window", sensor=self.sensor, score=round(score.value, 3), baseline=state, **shown)

    # -- learned state survives restarts ------------------------------------------------
    def state_path(self, storage_dir: str) -> str:
        return os.path.join(storage_dir, "models", f"{self.sensor}.json")

    def save_state(self, storage_dir: str) -> None:
        if not self.model.learns:
            return  # a signed bundle learns nothing; keep any saved on-device baseline as it was
        data = json.dumps({"features": list(self.spec_names()), "model": self.model.state()}).encode()
        sealed.write(self.state_path(storage_dir), data, "baseline", self.sensor, self.sealer)  # encrypted if asked

    def load_state(self, storage_dir: str) -> bool:
        path = self.state_path(storage_dir)
        try:
            raw = sealed.read(path, "baseline", self.sensor, self.sealer, self.log)
            if raw is None:
                return False
            saved = json.loads(raw)
        except sealed.Refused as exc:  # changed or swapped: logged and moved aside by sealed.read
            self.refused = {"reason": str(exc), "ts": round(time.time(), 3)}
            return False
        except (OSError, ValueError) as exc:
            if self.log:
                self.log.warning("saved model state unreadable; learning anew", path=path, error=str(exc))
            return False
        if saved.get("features") != list(self.spec_names()):
            if self.log:
                self.log.info("feature set changed; learning a new baseline", sensor=self.sensor)
            return False
        try:
            self.model = StreamingModel.from_state(saved["model"])
        except Exception as exc:  # a corrupt state file must not stop the sensor
            if self.log:
                self.log.warning("saved model state invalid; learning anew", path=path, error=str(exc))
            return False
        return True

    def spec_names(self) -> list[str]:
        """What a saved baseline was learned on: a baseline is reused only for the same
        protocol, preset/register map and feature set (a different map = different features)."""
        from models.features import feature_names

        cfg = self.cfg
        source = [f"protocol={cfg.protocol}", *driver_for(cfg.protocol).baseline_key(cfg),
                  f"detector={cfg.detector.type}:{sorted(dict(cfg.detector.params).items())!r}"]
        return source + list(feature_names(self.spec))
