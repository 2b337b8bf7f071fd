"""What flows between the pipeline stages, as frozen dataclasses.

driver -> Frame -> (windowing, features) -> FeatureVector -> detector -> Score
       -> alert policy -> Alert ; aggregator -> Aggregate ; both -> outbox -> MQTT

Every stage takes one of these and returns the next; none reaches back. Timestamps are
Unix epoch seconds (float, UTC) inside the agent and ISO 8601 UTC strings on the wire.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

from drivers.base import FeatureVector, Frame  # what drivers emit; re-exported here for the stages


def iso_utc(ts: float) -> str:
    """Epoch seconds -> ISO 8601 UTC with milliseconds.

    >>> iso_utc(0.0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def stable_id(*parts) -> str:
    """An id derived from what a record is, not when it was sent: a re-send after a crash
    carries the same id, so subscribers can drop duplicates.

    >>> stable_id("gw", "pump1", "aggregate", 60.0)
    '0e7a726f48cd0d54658b'
    >>> stable_id("gw", "pump1", "aggregate", 60.0) == stable_id("gw", "pump1", "aggregate", 60.0000001)
    True
    """
    key = "/".join(f"{p:.6f}" if isinstance(p, float) else str(p) for p in parts)
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def _envelope(record) -> dict:
    """The fields every published record starts with (the MQTT contract: docs/mqtt.md)."""
    return {"id": record.id, "ts": iso_utc(record.ts), "device": record.device, "sensor": record.sensor}


@dataclass(frozen=True, slots=True)
class Score:
    """The detector's verdict on one feature vector.

    `value` is calibrated to [0, 1] (see models/calibration.py for what a threshold means).
    `ready` is False while the detector is still learning its baseline: such scores are
    shown, never alerted on. `reason` lists the features that contributed most, largest
    first, as (feature, value, contribution).
    """

    sensor: str
    ts: float
    value: float
    ready: bool
    model: str  # "name@version"
    reason: tuple[tuple[str, float, float], ...] = ()


LEVELS = ("clear", "warning", "alarm")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event (the MQTT contract: docs/mqtt.md). `id` is derived from what the event is (its
    time and its content), so a re-send after a crash carries the same id and subscribers can
    de-duplicate, and two different events never share one, even when a clock step repeats a ts."""

    ts: float
    device: str
    sensor: str
    level: str  # clear | warning | alarm
    score: float
    threshold: float
    model: str
    reason: tuple[tuple[str, float, float], ...]
    kind: str = "anomaly"  # anomaly | iso10816 | sensor_offline ... (extends the contract)
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            # Content too, not only the time: after a wall clock steps back, another event can carry
            # the same ts, and one id must never name two different messages.
            object.__setattr__(self, "id", stable_id(self.device, self.sensor, self.kind, self.level, self.ts,
                                                     float(self.score), float(self.threshold), self.model,
                                                     repr(tuple(self.reason))))

    def payload(self) -> dict:
        return {
            **_envelope(self),
            "level": self.level,
            "kind": self.kind,
            "score": round(float(self.score), 6),
            "threshold": float(self.threshold),
            "model": self.model,
            "reason": [
                {"feature": f, "value": round(float(v), 6), "contribution": round(float(c), 4)}
                for f, v, c in self.reason
            ],
        }


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Per-feature mean/min/max (and last score) over one `aggregates.interval`.
    `ts` is the end of the interval (the MQTT contract: docs/mqtt.md)."""

    ts: float
    device: str
    sensor: str
    interval_s: float
    count: int
    features: dict[str, dict[str, float]]  # feature -> {"mean", "min", "max"}
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", stable_id(self.device, self.sensor, "aggregate", self.ts, self.count,
                                                     repr(sorted((k, sorted(v.items())) for k, v in self.features.items()))))

    def payload(self) -> dict:
        return {
            **_envelope(self),
            "interval_s": self.interval_s,
            "count": self.count,
            "features": {
                k: {s: round(float(v), 6) for s, v in stats.items()} for k, stats in self.features.items()
            },
        }
