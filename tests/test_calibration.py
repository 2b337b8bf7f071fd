"""Calibration (raw score -> [0, 1]) and the learn-then-score StreamingModel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models import registry
from models.calibration import Calibrator
from models.streaming import StreamingModel
from test_detectors import healthy_vectors  # tests/ is on sys.path (see conftest.py)


def test_calibrated_score_is_monotone_bounded_and_anchored() -> None:
    healthy = np.random.default_rng(0).chisquare(5, 20_000) / 5  # a Mahalanobis-like healthy score
    cal = Calibrator.fit(healthy)
    raw = np.concatenate([[-1.0, 0.0], np.sort(np.random.default_rng(1).exponential(5.0, 2000)), [1e6, 1e300]])
    out = cal(raw)
    assert np.all((out >= 0.0) & (out <= 1.0)) and np.all(np.diff(out) >= 0.0)
    assert cal(np.quantile(healthy, 0.999)) == pytest.approx(0.5, abs=1e-9)
    assert cal(np.median(healthy)) == 0.0
    assert cal(cal.raw_at(0.9)) == pytest.approx(0.9)
    # alarm = the excess over the healthy median is alarm_ratio times the tail's excess
    assert cal.raw_at(0.9) - cal.median == pytest.approx(cal.alarm_ratio * (cal.tail - cal.median))
    assert np.mean(cal(healthy) >= 0.5) == pytest.approx(0.001, abs=0.0005)
    assert Calibrator.from_dict(json.loads(json.dumps(cal.to_dict()))) == cal


def test_constant_baseline_scores_still_calibrate() -> None:
    cal = Calibrator.fit(np.zeros(100))
    assert cal(0.0) == 0.0 and cal(1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        Calibrator.fit([math.nan])


def run(model: StreamingModel, vectors, t0: float = 0.0, step: float = 0.5):
    return [model.update(x, t0 + i * step) for i, x in enumerate(vectors)]


def test_learning_phase_then_few_false_warnings_on_fresh_healthy_data() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=400.0)  # 800 vectors at 2 per second
    learning = run(model, healthy_vectors(800, seed=3))
    assert not any(ready for _, ready, _ in learning) and not model.ready
    scored = run(model, healthy_vectors(2000, seed=4), t0=400.0)
    assert all(ready for _, ready, _ in scored)
    values = np.array([s for s, _, _ in scored])
    assert np.all((values >= 0) & (values <= 1))
    assert np.mean(values >= 0.5) < 0.01
    score, _, reason = model.update(dict(healthy_vectors(1, 5)[0], **{"ax.kurtosis": 9.0}), ts=2000.0)
    assert score > 0.9 and reason[0][:2] == ("ax.kurtosis", 9.0) and len(reason) == 3


def test_non_finite_input_neither_crashes_nor_poisons() -> None:
    model = StreamingModel(registry.create("gaussian"), learn_seconds=100.0, adapt_half_life_s=3600.0)
    vectors = healthy_vectors(400, seed=6)
    run(model, vectors[:100])
    before = json.dumps(model.detector.state())
    for bad in (math.nan, math.inf, -math.inf):
        score, ready, reason = model.update(dict(vectors[100], **{"ax.rms_g": bad}), ts=50.0)
        assert 0.0 <= score <= 1.0 and not ready and all(f != "ax.rms_g" for f, _, _ in reason)
    assert model.update({"ax.rms_g": math.nan}, ts=50.0) == (0.0, False, [])
    assert json.dumps(model.detector.state()) == before, "a non-finite vector must never be learned"
    scored = run(model, vectors[101:], t0=101 * 0.5)
    assert model.ready and all(np.isfinite(s) for s, _, _ in scored)


def test_adaptation_learns_healthy_vectors_only() -> None:
    model = StreamingModel(registry.create("gaussian"), learn_seconds=100.0, adapt_half_life_s=3600.0)
    run(model, healthy_vectors(300, seed=7))
    assert model.ready and model.detector.half_life == pytest.approx(3600.0 * 2, rel=0.02)
    before = json.dumps(model.detector.state())
    score, _, _ = model.update(dict(healthy_vectors(1, 8)[0], **{"ax.rms_g": 1.0}), ts=151.0)
    assert score >= 0.5 and json.dumps(model.detector.state()) == before
    score, _, _ = model.update(healthy_vectors(1, 8)[0], ts=152.0)
    assert score < 0.5 and json.dumps(model.detector.state()) != before


@pytest.mark.parametrize("split", [50, 250])  # mid-learning and after
def test_state_round_trip_continues_identically(split: int) -> None:
    vectors = healthy_vectors(300, seed=9)
    model = StreamingModel(registry.create("gaussian"), learn_seconds=100.0, adapt_half_life_s=600.0)
    run(model, vectors[:split])
    restored = StreamingModel.from_state(json.loads(json.dumps(model.state())))
    assert restored.model == model.model
    assert run(restored, vectors[split:], t0=split * 0.5) == run(model, vectors[split:], t0=split * 0.5)
