"""The baseline lifecycle in models/: learn_seconds as written, short-baseline calibration,
excluded windows, regime change inside the learning data, drift, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import registry
from models.calibration import Calibrator, exponential_tail
from models.changepoint import regime_change
from models.drift import DriftMonitor, PageHinkley
from models.streaming import StreamingModel
from test_detectors import healthy_vectors  # tests/ is on sys.path (see conftest.py)

STEP = 4.096  # one 4096-sample window at 1000 Hz: the contract defaults


def feed(model: StreamingModel, vectors, t0: float = 0.0, step: float = STEP, **kw):
    return [model.update(x, t0 + i * step, **kw) for i, x in enumerate(vectors)]


def faulty(v: dict, factor: float = 300.0) -> dict:
    return {**v, "ax.band_10_100_g2": v["ax.band_10_100_g2"] * factor, "ax.kurtosis": v["ax.kurtosis"] * 3}


@pytest.mark.parametrize("learn_seconds, windows", [(20.0, 5), (40.0, 10), (409.0, 100)])
def test_learn_seconds_is_honoured_without_a_minimum(learn_seconds, windows) -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=learn_seconds)
    out = feed(model, healthy_vectors(windows + 3, seed=1))
    ready = [r for _, r, _ in out]
    # the first window ending learn_seconds after the first window's end is the first one scored
    assert ready.index(True) == windows and not any(ready[:windows])
    b = model.baseline()
    assert b["windows"] == windows and b["progress"] == 1.0 and b["learned_at"] is not None
    events = model.take_events()
    assert [k for k, _ in events] == ["learned"] and model.take_events() == []


def test_one_window_baseline_cannot_score_and_says_so() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=4.0)
    out = feed(model, healthy_vectors(3, seed=1))
    b = model.baseline()
    assert b["state"] == "suspect" and b["windows"] == 1 and "too few" in b["reason"]
    assert not any(r for _, r, _ in out)  # no learned alert from a baseline that cannot be calibrated


def test_baseline_status_while_learning() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=40.0)
    feed(model, healthy_vectors(6, seed=2))
    b = model.baseline()
    assert b["state"] == "learning" and b["learned_at"] is None and b["windows"] == 6
    assert b["progress"] == pytest.approx(5 * STEP / 40.0, abs=1e-3)


@pytest.mark.parametrize("windows, fault_score", [(5, 0.5), (10, 0.9)])
def test_short_baseline_is_calibrated_for_its_size_and_still_detects(windows, fault_score) -> None:
    exceed, faults = [], []
    for seed in range(30):
        model = StreamingModel(registry.create("auto"), learn_seconds=windows * STEP - 0.1)
        feed(model, healthy_vectors(windows, seed=seed))
        fresh = healthy_vectors(200, seed=1000 + seed)
        scores = [s for s, r, _ in feed(model, fresh, t0=windows * STEP)]
        assert model.calibrator.method == "exponential-tail" and model.calibrator.n == windows
        exceed.append(np.mean(np.array(scores) >= 0.5))
        faults.append(model.update(faulty(fresh[0]), ts=1e6)[0])
    # not the empirical 99.9 % quantile of 5 numbers (exceeded by ~1 healthy window in 6)
    assert np.mean(exceed) < 0.01, np.mean(exceed)
    assert np.median(faults) > fault_score  # 5 windows: a wide tail, only large changes alert


def test_exponential_tail_exceedance_matches_its_quantile_on_exponential_data() -> None:
    rng = np.random.default_rng(0)
    for n in (5, 10, 30):
        rates = []
        for _ in range(3000):
            m, tail, _ = exponential_tail(1.0 + rng.exponential(1.0, n), 0.999)
            rates.append(np.exp(-max(tail - 1.0, 0.0)) * 1.0)  # P(new > tail) for the true law
        assert 0.0003 < np.mean(rates) < 0.003, (n, np.mean(rates))
    # empirical above 1/(1-q) scores, as before
    assert Calibrator.fit(np.arange(2000.0)).method == "empirical"


def test_excluded_windows_are_scored_never_learned_and_iso_makes_it_suspect() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=40.0)
    vectors = healthy_vectors(12, seed=3)
    feed(model, vectors[:4])
    before = json.dumps(model.detector.state())
    score, ready, _ = model.update(faulty(vectors[4]), ts=4 * STEP, exclude="iso10816")
    model.update(vectors[5], ts=5 * STEP, exclude="implausible")
    assert json.dumps(model.detector.state()) == before
    feed(model, vectors[6:], t0=6 * STEP)
    b = model.baseline()
    assert b["excluded"] == {"iso10816": 1, "implausible": 1} and b["windows"] == 8
    assert b["state"] == "suspect" and "ISO 10816" in b["reason"]


def test_only_implausible_windows_excluded_keeps_the_baseline_ready() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=40.0)
    vectors = healthy_vectors(12, seed=4)
    feed(model, vectors[:5])
    model.update(vectors[5], ts=5 * STEP, exclude="implausible")
    feed(model, vectors[6:], t0=6 * STEP)
    assert model.baseline()["state"] == "ready" and model.baseline()["excluded"] == {"implausible": 1}


def test_fault_inside_learning_is_cut_off_and_alerted_after_learning() -> None:
    n = 100
    model = StreamingModel(registry.create("auto"), learn_seconds=n * STEP - 0.1)
    vectors = healthy_vectors(n + 20, seed=5)
    onset = int(0.6 * n)
    data = vectors[:onset] + [faulty(v) for v in vectors[onset:]]
    out = feed(model, data)
    b = model.baseline()
    assert b["state"] == "ready" and "changed regime" in b["reason"], b
    assert 10 <= b["windows"] <= onset
    after = [s for s, r, _ in out[n:]]
    assert all(r for _, r, _ in out[n:]) and min(after) > 0.9


def test_fault_early_in_learning_keeps_only_what_came_before() -> None:
    n = 60
    model = StreamingModel(registry.create("auto"), learn_seconds=n * STEP - 0.1)
    vectors = healthy_vectors(n + 1, seed=6)
    feed(model, vectors[:18] + [faulty(v) for v in vectors[18:]])  # the fault at 30 % of learning
    b = model.baseline()
    assert "changed regime" in (b["reason"] or ""), b
    if b["state"] == "ready":  # kept a healthy part: it must not include the faulty windows
        assert b["windows"] <= 18


@pytest.mark.parametrize("seed", range(8))
def test_healthy_learning_reports_no_regime_change(seed) -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=200 * STEP - 0.1)
    feed(model, healthy_vectors(201, seed=100 + seed))
    assert model.baseline()["state"] == "ready" and model.baseline()["reason"] is None


def test_regime_change_test_only_counts_increases() -> None:
    y = np.exp(np.concatenate([np.full(30, 3.0), np.full(30, 0.0)]) + np.random.default_rng(0).normal(0, 0.3, 60))
    assert regime_change(np.arange(60.0), y) is None
    assert regime_change(np.arange(60.0), y[::-1]) is not None


def test_state_round_trip_mid_learning_continues_identically() -> None:
    vectors = healthy_vectors(80, seed=7)
    data = vectors[:45] + [faulty(v) for v in vectors[45:]]
    model = StreamingModel(registry.create("auto"), learn_seconds=60 * STEP - 0.1, adapt_half_life_s=3600.0)
    feed(model, data[:40])
    restored = StreamingModel.from_state(json.loads(json.dumps(model.state())))
    assert feed(restored, data[40:], t0=40 * STEP) == feed(model, data[40:], t0=40 * STEP)
    assert restored.baseline() == model.baseline() and "changed regime" in model.baseline()["reason"]


def test_format_1_state_loads_as_a_ready_baseline() -> None:
    model = StreamingModel(registry.create("gaussian"), learn_seconds=40.0)
    feed(model, healthy_vectors(12, seed=8))
    old = {k: v for k, v in model.state().items() if k in (
        "name", "version", "learn_seconds", "adapt_half_life_s", "quantile", "alarm_ratio", "adapt_below",
        "cold_start_fraction", "t0", "n_learned", "pool", "pool_seen", "stride", "calibrator", "ready", "detector")}
    restored = StreamingModel.from_state({**old, "format": 1})
    assert restored.baseline()["state"] == "ready" and restored.ready


def test_slow_fault_absorbed_by_adaptation_is_reported_as_drift() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=100 * STEP - 0.1, adapt_half_life_s=600.0)
    vectors = healthy_vectors(2100, seed=9)
    feed(model, vectors[:100])
    events, drift_seen = [], False
    for i, v in enumerate(vectors[100:]):
        growth = np.exp(i / 250.0)  # the band energy grows ~x1.004 per window: slow enough to adapt to
        model.update({**v, "ax.band_10_100_g2": v["ax.band_10_100_g2"] * growth}, ts=(100 + i) * STEP)
        events += model.take_events()
        drift_seen |= model.baseline()["drift"]["large"]
    assert ("drift", True) in events and drift_seen
    assert model.baseline()["adapted"] > 0


def test_healthy_adapting_model_reports_no_drift() -> None:
    model = StreamingModel(registry.create("auto"), learn_seconds=100 * STEP - 0.1, adapt_half_life_s=600.0)
    feed(model, healthy_vectors(2000, seed=10))
    assert not [e for e in model.take_events() if e[0] == "drift"]
    assert model.baseline()["drift"]["level"] < 0.2


def test_page_hinkley_agrees_with_river() -> None:
    from river.drift import PageHinkley as RiverPH

    rng = np.random.default_rng(1)
    stream = np.concatenate([rng.normal(0.1, 0.05, 400), rng.normal(0.6, 0.05, 200)])
    ours = PageHinkley(min_instances=30, delta=0.05, threshold=5.0)
    theirs = RiverPH(min_instances=30, delta=0.05, threshold=5.0, mode="up")
    got, want = [], []
    for i, x in enumerate(stream):
        if ours.update(float(x)):
            got.append(i)
        theirs.update(float(x))
        if theirs.drift_detected:
            want.append(i)
    assert got == want and got


def test_drift_monitor_state_round_trip() -> None:
    d = DriftMonitor()
    for t in range(100):
        d.update(0.05 + 0.01 * (t % 3), float(t))
    e = DriftMonitor()
    e.restore(json.loads(json.dumps(d.state())))
    assert [e.update(0.9, t) for t in range(100, 300)] == [d.update(0.9, t) for t in range(100, 300)]


def test_a_glitch_window_in_a_short_baseline_is_dropped_not_learned() -> None:
    vectors = healthy_vectors(30, seed=11)
    glitch = {**vectors[0], "ax.kurtosis": 2000.0, "ax.rms_g": 5.0}  # a read across a line resync
    model = StreamingModel(registry.create("auto"), learn_seconds=24 * STEP - 0.1)
    feed(model, [glitch] + vectors[1:25])
    b = model.baseline()
    assert b["excluded"] == {"outlier": 1} and b["windows"] == 23 and b["state"] == "ready"
    assert model.update(faulty(vectors[26], 30.0), ts=30 * STEP)[0] > 0.9
    assert model.update(vectors[27], ts=31 * STEP)[0] < 0.5


def test_baseline_rows_counts_the_baseline_instead_of_timing_it() -> None:
    """replay --train-rows N: the first N updates are the baseline whatever learn_seconds says
    (here shorter than their span), learning ends when update N + 1 arrives, and a state saved
    in between keeps the count."""
    rows = healthy_vectors(60, seed=5)
    model = StreamingModel(registry.create("gaussian"), learn_seconds=5.0, baseline_rows=40)
    ready = [model.update(x, ts=100.0 + i)[1] for i, x in enumerate(rows[:30])]
    restored = StreamingModel.from_state(json.loads(json.dumps(model.state())))
    for m in (model, restored):
        ready_m = ready + [m.update(x, ts=130.0 + i)[1] for i, x in enumerate(rows[30:])]
        assert ready_m[:40] == [False] * 40 and all(ready_m[40:])
        b = m.baseline()
        assert b["state"] == "ready" and b["windows"] == 40 and b["learned_at"] == "1970-01-01T00:02:19.000Z"
        assert [k for k, _ in m.take_events()] == ["learned"]
