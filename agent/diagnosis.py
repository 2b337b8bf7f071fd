"""Per-sensor fault diagnosis in the pipeline: the window an alert was raised on is diagnosed
(models/diagnosis) and the verdict rides on the alert; the latest verdict is kept for the status.

Only warnings and alarms of kind `anomaly` are diagnosed, and only on sensors with a
`machine:` description and a waveform (serial `lines`/`frames` or the simulator; a Modbus
transmitter sends features, not samples). The diagnosis is computed synchronously just before
the alert is emitted: it costs a few milliseconds per 4096 x 3 window (bench/diagnosis.py,
docs/BENCHMARKS.md), it reads at most the last `MAX_SAMPLES` samples of the window so its cost is
bounded whatever `window.size` is, and any error in it is logged and the alert goes out without
a diagnosis: the diagnosis never holds back or loses an alert.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from agent.records import Alert, iso_utc

MAX_SAMPLES = 16384  # longest stretch diagnosed: 4x the default window, ~10 ms on one core


class SensorDiagnosis:
    """Diagnosis state of one sensor: the latest window, the latest verdict (status topic).
    Inert (keeps nothing, attaches nothing) when `machine` is None."""

    def __init__(self, machine, rate: float, channels: tuple[str, ...], vibration: tuple[str, ...], log=None) -> None:
        self.machine = machine
        self.rate = float(rate)
        self.columns = np.array([channels.index(c) for c in vibration], dtype=int)
        self.vibration = vibration
        self.log = log
        self.latest: dict | None = None
        self.window: np.ndarray | None = None

    @classmethod
    def from_sensor_config(cls, cfg, log=None) -> SensorDiagnosis:
        """Active when the sensor has a `machine:` and vibration channels (not the temperature ones)."""
        temps = set(cfg.temperature_channels)
        vibration = tuple(c for c in cfg.channels if c not in temps)
        machine = getattr(cfg, "machine", None) if vibration and cfg.protocol != "modbus" else None
        return cls(machine, cfg.sample_rate, tuple(cfg.channels), vibration, log)

    def keep(self, window: np.ndarray) -> None:
        """The window just featurized, shape (n, channels) (a reference, no copy)."""
        if self.machine is not None:
            self.window = window

    def diagnose(self, window: np.ndarray, ts: float) -> dict | None:
        """The diagnosis payload of `window` (shape (n, channels)); None when it failed (logged)."""
        from models.diagnosis import diagnose

        try:
            x = np.asarray(window, dtype=float)[-MAX_SAMPLES:, self.columns]
            d = diagnose(x, self.rate, self.machine, self.vibration).payload()
        except Exception as exc:  # a diagnosis must never stop the alert it explains
            if self.log:
                self.log.warning("diagnosis failed; the alert goes out without it", error=str(exc))
            return None
        self.latest = {"ts": iso_utc(ts), **d}
        return d

    def attach(self, alert: Alert | None) -> Alert | None:
        """`alert` with its `diagnosis` when it is an anomaly warning/alarm; else unchanged."""
        if alert is None or alert.kind != "anomaly" or alert.level not in ("warning", "alarm") or self.window is None:
            return alert
        d = self.diagnose(self.window, alert.ts)
        return alert if d is None else dataclasses.replace(alert, diagnosis=d)

    def status(self) -> dict:
        """The status topic's `sensors.<name>.diagnosis`: the latest verdict with its time, if any."""
        return {"diagnosis": self.latest} if self.latest is not None else {}


def fault_name(pipeline, ts: float) -> str:
    """Replay's `diagnosis` column: while the pipeline's alert is active, the fault named for the
    window (or burst) last kept; else, or without `machine:`, or when the diagnosis failed, ""."""
    d = pipeline.diagnosis
    if not pipeline.policy.active or d.window is None:
        return ""
    payload = d.diagnose(d.window, float(ts))
    return "" if payload is None else payload["fault"]


def diagnosis_text(d: dict) -> str:
    """A diagnosis payload in words, for the log and `pdm-agent watch`.

    >>> diagnosis_text({"fault": "outer_race", "component": "de", "confidence": 0.752, "evidence": {}})
    'outer_race on de (confidence 0.75)'
    >>> diagnosis_text({"fault": "unknown", "component": "", "confidence": 0.0, "evidence": {}})
    'unknown'
    """
    if d.get("fault") == "unknown" or not d.get("component"):
        return str(d.get("fault"))
    return f"{d.get('fault')} on {d.get('component')} (confidence {float(d.get('confidence', 0)):.2f})"


def alert_bytes(alert: Alert, topic: str, max_packet_bytes: int | None) -> tuple[bytes, str | None]:
    """The alert's JSON payload, small enough for `max_packet_bytes` (mqtt, the broker's limit)
    when only its diagnosis makes it too large: first the diagnosis' `evidence` is left out, then
    the whole diagnosis. An alert must never be set aside because of the diagnosis riding on it.
    Returns (payload, what was left out in words, or None)."""
    from agent.broker_faults import packet_size

    def encode(a: Alert) -> bytes:
        return json.dumps(a.payload(), separators=(",", ":")).encode()

    payload = encode(alert)
    if max_packet_bytes is None or alert.diagnosis is None or packet_size(topic, payload) <= max_packet_bytes:
        return payload, None
    lean = dataclasses.replace(alert, diagnosis={**alert.diagnosis, "evidence": {}})
    payload = encode(lean)
    if packet_size(topic, payload) <= max_packet_bytes:
        return payload, "the diagnosis' evidence"
    return encode(dataclasses.replace(alert, diagnosis=None)), "the diagnosis"
