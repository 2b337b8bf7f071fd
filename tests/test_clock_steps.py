"""Time and learning: wall-clock steps and restarts neither end nor stretch learning (models/clock.py)."""

from __future__ import annotations

import json

import numpy as np

from models import registry
from models.streaming import StreamingModel

STEP = 4.0  # seconds between windows
LEARN = 600.0


def vectors(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [{"ax.rms_g": float(v), "temp.mean_c": float(40 + t)}
            for v, t in zip(rng.lognormal(-3, 0.1, n), rng.normal(0, 0.1, n))]


def feed(model, xs, t0: float) -> list[bool]:
    return [model.update(x, ts=t0 + i * STEP)[1] for i, x in enumerate(xs)]


def test_a_forward_clock_step_does_not_end_learning() -> None:
    m = StreamingModel(registry.create("gaussian"), learn_seconds=LEARN)
    xs = vectors(200)
    feed(m, xs[:20], 1_000.0)  # 80 s of data
    ready = feed(m, xs[20:], 1_000.0 + 30 * 86400.0)  # NTP steps the clock a month forward
    assert m.baseline()["state"] == "ready"
    first = ready.index(True) + 20
    assert first * STEP >= LEARN - STEP and first * STEP <= LEARN + 2 * STEP, "learning spans 600 s of data"


def test_a_backward_step_and_a_restart_neither_end_nor_stretch_learning() -> None:
    m = StreamingModel(registry.create("gaussian"), learn_seconds=LEARN)
    xs = vectors(200, seed=1)
    feed(m, xs[:50], 1_000_000.0)  # 200 s
    restored = StreamingModel.from_state(json.loads(json.dumps(m.state())))
    ready = feed(restored, xs[50:80], 1_000_000.0 + 3 * 86400.0)  # back after 3 days off
    assert not any(ready) and 0.4 < restored.baseline()["progress"] < 0.6
    ready = feed(restored, xs[80:], 1_000_000.0 - 86400.0)  # then the clock steps a day back
    first = ready.index(True) + 80
    assert LEARN - STEP <= first * STEP <= LEARN + 3 * STEP
    assert restored.calibrator is not None


def test_a_wall_clock_step_makes_no_sensor_stuck_or_offline(monkeypatch) -> None:
    import time

    from agent import sensor_health
    from agent.config import parse_config

    cfg = parse_config("device: {id: g}\nsensors: [{name: p, protocol: sim}]\n")
    health = sensor_health.from_sensor_config(cfg.sensors[0])
    health.observe({"temp.mean_c": 40.0})
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 7 * 86400.0)  # NTP steps a week forward
    health.observe({"temp.mean_c": 40.0})
    report = health.report(online=True)
    assert report["state"] == "ok" and report["stuck"] == []
