"""The one-channel novelty detector (models/rarity.py) on series with known answers, through the
streaming model the daemon and replay use (models/streaming.py), with its product defaults."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from models.calibration import SurpriseMap
from models.rarity import RarityDetector
from models.streaming import StreamingModel

N = 6000
WARN, ALARM = 0.5, 0.9


def scores(values, every_s: float = 300.0, learn_records: int = 200, **params) -> np.ndarray:
    """Calibrated scores of a one-channel series (a record every `every_s`), learned online from
    the first record, the streaming model's learning phase `learn_records` long, adaptation on."""
    model = StreamingModel(RarityDetector(**params), learn_seconds=learn_records * every_s, adapt_half_life_s=86400.0)
    return np.array([model.update({"temp": float(v)}, ts=i * every_s)[0] for i, v in enumerate(values)])


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return 40.0 + np.random.default_rng(0).normal(0.0, 0.2, N)


def test_iid_noise_stays_quiet_and_the_score_does_not_depend_on_units(noise) -> None:
    s = scores(noise)
    assert (s[500:] >= WARN).mean() < 0.002 and s[500:].max() < ALARM
    # Same series in other units (x 10^4, offset): identical scores, so one threshold fits every stream.
    np.testing.assert_allclose(scores(noise * 1e4 - 3e5), s, rtol=1e-6, atol=1e-9)


def test_a_spike_alarms_at_once(noise) -> None:
    x = noise.copy()
    x[3000] = 43.0
    s = scores(x)
    assert s[3000] >= ALARM and s[2900:3000].max() < WARN


def test_a_level_shift_warns_at_once_then_is_suppressed_then_learned(noise) -> None:
    x = noise.copy()
    x[3000:] += 1.5  # 7.5 sd
    s = scores(x)
    assert s[3000] >= ALARM
    assert (s[3000:3300] >= WARN).sum() < 30, "one episode, a few alerts, not hundreds"
    assert (s[-500:] >= WARN).sum() <= 5, "a persistent new level becomes known"


def test_a_slow_drift_within_the_healthy_range_never_alarms(noise) -> None:
    s = scores(noise + np.linspace(0.0, 0.2, N))  # 1 sd over the whole series
    assert s[500:].max() < ALARM and (s[500:] >= WARN).mean() < 0.01


def test_a_daily_cycle_is_learned(noise) -> None:
    cycle = noise + 0.6 * np.sin(np.arange(N) * 2 * np.pi / 288)
    s = scores(cycle)
    assert s[1000:].max() < ALARM and (s[1000:] >= WARN).mean() < 0.005


def test_a_change_of_variance_warns_within_a_few_records(noise) -> None:
    x = noise.copy()
    x[3000:] = 40.0 + np.random.default_rng(1).normal(0.0, 1.0, N - 3000)
    s = scores(x)
    first = int(np.argmax(s[3000:] >= WARN))
    assert s[3000 + first] >= WARN and first < 10


def test_memory_is_bounded_by_history() -> None:
    det = RarityDetector(history=1000)
    rng = np.random.default_rng(2)

    def feed(n: int) -> None:
        for v in rng.normal(size=n):
            x = {"p": float(v)}
            det.score(x)
            det.learn(x)
            det.observe(x)

    feed(2000)
    tracemalloc.start()
    feed(1000)
    after_3k = tracemalloc.get_traced_memory()[0]
    feed(5000)
    after_8k = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    channel = det._channels["p"]
    assert all(len(t.sorted) == len(t.ring) == 1000 for t in channel.tails)
    assert after_8k - after_3k < 20_000, "memory must not grow with the length of the series"


def test_state_round_trip_scores_identically(noise) -> None:
    det = RarityDetector(history=500)
    for v in noise[:800]:
        x = {"t": float(v)}
        det.learn(x)
        det.observe(x)
    restored = RarityDetector.from_state(det.state())
    probe = [{"t": float(v)} for v in (39.0, 40.0, 40.5, 42.0)]
    assert [restored.score(x) for x in probe] == [det.score(x) for x in probe]


def test_invalid_parameters_are_refused_in_words() -> None:
    with pytest.raises(ValueError, match="history must be >= 20"):
        RarityDetector(history=5)
    with pytest.raises(ValueError, match="warmup must be between"):
        RarityDetector(history=100, warmup=500)
    with pytest.raises(ValueError, match="smooth must be in"):
        RarityDetector(smooth=0.0)


def test_surprise_map_is_monotone_and_never_saturates() -> None:
    m = SurpriseMap(s_half=2.5, alarm_ratio=2.0)
    s = np.linspace(0.0, 500.0, 5001)
    out = np.array([m(v) for v in s])
    assert np.all(np.diff(out) > 0) and out[-1] < 1.0
    assert m(2.5) == pytest.approx(WARN) and m(5.0) == pytest.approx(ALARM)


def test_config_check_says_when_learn_seconds_is_shorter_than_the_warmup(tmp_path) -> None:
    """No hidden minimum: a rarity sensor learning for fewer records than `warmup` is told so."""
    import subprocess
    import sys

    cfg = tmp_path / "config.yaml"
    cfg.write_text("device: {id: gw1}\nsensors:\n  - name: t1\n    protocol: sim\n"
                   "    detector: {type: rarity, learn_seconds: 60, params: {warmup: 50}}\n")
    out = subprocess.run([sys.executable, "-m", "agent.cli", "config", "check", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "reports nothing before its history holds warmup=50 records" in text and "after 205 s" in text
    cfg.write_text(cfg.read_text().replace("learn_seconds: 60", "learn_seconds: 300"))
    out = subprocess.run([sys.executable, "-m", "agent.cli", "config", "check", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert "warmup" not in out.stdout + out.stderr


def test_a_fast_stream_alerts_per_unit_of_time_not_per_record() -> None:
    """At 1 Hz the history keeps one record per 5 min and a surprise is corrected for the 300 records
    tested per 5 min: a healthy day-cycle stream stays about as quiet as at one record per 5 min."""
    n = 2 * 86400
    rng = np.random.default_rng(4)
    x = 40.0 + 3.0 * np.sin(np.arange(n) * 2 * np.pi / 86400) + rng.normal(0.0, 0.2, n)
    x[int(1.5 * 86400)] += 8.0
    s = scores(x, every_s=1.0, learn_records=3600)
    healthy = np.r_[86400:int(1.5 * 86400) - 10, int(1.5 * 86400) + 600:n]
    assert (s[healthy] >= WARN).sum() <= 5, "a few false warnings a day at most, not hundreds"
    assert s[int(1.5 * 86400)] >= WARN, "a 40-sd spike is still flagged"


def test_an_earlier_huge_outlier_does_not_hide_a_later_spike(noise) -> None:
    alone = noise.copy()
    alone[4000] += 2.0  # 10 sd
    glitched = alone.copy()
    glitched[1500] += 500.0  # a sensor glitch, 2500 sd, long before
    s_alone, s_glitched = scores(alone), scores(glitched)
    assert s_alone[4000] >= ALARM
    assert s_glitched[1500] >= ALARM and s_glitched[4000] >= WARN
