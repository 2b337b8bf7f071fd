"""The context of a one-channel detector's surprise (models/context.py): the rest of an episode and a
daily rhythm are not news, an escalation and a rarity at an unusual hour are. Through the streaming
model the daemon and replay use (models/streaming.py), with the product defaults of `rarity`."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from models.context import EpisodeContext
from models.rarity import RarityDetector
from models.streaming import StreamingModel

DAY = 288  # records of 5 minutes
WARN = 0.5


def scores(values, every_s: float = 300.0, **params) -> np.ndarray:
    """Calibrated scores of a one-channel series, one day of learning, adaptation on (as replay)."""
    model = StreamingModel(RarityDetector(**params), learn_seconds=86400.0, adapt_half_life_s=7 * 86400.0)
    return np.array([model.update({"cpu": float(v)}, ts=i * every_s)[0] for i, v in enumerate(values)])


def noise(days: int, seed: int = 0) -> np.ndarray:
    return 10.0 + np.random.default_rng(seed).normal(0.0, 0.2, days * DAY)


def test_a_spike_at_the_same_time_every_day_alerts_once_and_the_same_spike_at_another_hour_alerts() -> None:
    """A nightly job's CPU spike (jitter of a record or two) is a rhythm after its first day; the same
    spike at noon is a contextual anomaly: a value normal at 2 am, not at 2 pm."""
    x = noise(12)
    jitter = np.random.default_rng(5).integers(-2, 3, 12)
    nightly = [d * DAY + 24 + int(jitter[d]) for d in range(2, 12)]
    for k, i in enumerate(nightly):
        x[i] += 4.0 + 0.3 * k  # 20 sd and growing a little: each one beyond everything seen
    noon = 9 * DAY + 168
    x[noon] += 5.0
    s, plain = scores(x), scores(x, days=0)
    assert min(s[nightly[0]], s[nightly[1]]) >= WARN, "the first two nights are news: once is no rhythm"
    assert max(s[i] for i in nightly[4:]) < WARN, "from the fifth night on it is the rhythm"
    assert min(plain[i] for i in nightly[4:]) >= WARN, "without the daily context every night alerts"
    assert s[noon] >= WARN, "the same kind of spike at an unusual hour still alerts"


def test_an_episode_alerts_once_or_twice_not_at_every_record_but_an_escalation_alerts_again() -> None:
    x = noise(4)
    start = 3 * DAY
    x[[start, start + 2, start + 4]] += 3.0  # 15-sd spikes every other record for 25 minutes
    x[start + 8] += 9.0  # then 45 sd: much rarer than what was reported
    s, plain = scores(x), scores(x, refractory_s=0)
    assert s[start] >= WARN and (s[start + 1:start + 8] >= WARN).sum() <= 1, "the episode's first alert, at most one more"
    assert (plain[start:start + 8] >= WARN).sum() >= 6, "without the refractory period it alerts at every record"
    assert s[start + 8] >= WARN, "an escalation is news"


def test_after_the_refractory_period_an_equal_alert_is_reported_again() -> None:
    x = noise(4)
    first = 3 * DAY
    x[[first, first + 6, first + 36]] += 3.0  # a spike, the same 30 min later, the same 3 h later
    s = scores(x)
    assert s[first] >= WARN and s[first + 6] < WARN and s[first + 36] >= WARN


def test_level_shift_drift_and_variance_keep_their_answers() -> None:
    base = noise(6, seed=3)
    shift = base.copy()
    shift[4 * DAY:] += 1.5  # 7.5 sd
    s = scores(shift)
    assert s[4 * DAY] >= WARN and (s[-DAY:] >= WARN).sum() <= 2, "warned at once, then learned"
    drift = scores(base + np.linspace(0.0, 0.2, base.size))
    assert (drift[DAY:] >= WARN).mean() < 0.01, "a slow drift within the healthy range does not alert"
    wide = base.copy()
    wide[4 * DAY:] = 10.0 + np.random.default_rng(1).normal(0.0, 1.0, 2 * DAY)
    v = scores(wide)
    assert (v[4 * DAY:4 * DAY + 10] >= WARN).any(), "a change of variance warns within a few records"


def test_context_memory_is_constant_and_its_state_round_trips() -> None:
    ctx = EpisodeContext()
    ctx.set_cadence(300.0, 1)
    rng = np.random.default_rng(2)

    def feed(n: int) -> None:
        for s in rng.exponential(0.6, n):  # surprises in decades; a few above the warning
            ctx.advance(float(s), ctx.news(float(s), float(s)), warn=2.75)

    feed(5 * DAY)
    size = len(ctx._ring)
    assert size == 3 * DAY + 6 + 1  # three days of 5-min buckets plus the 30-min jitter
    tracemalloc.start()
    feed(5 * DAY)
    a = tracemalloc.get_traced_memory()[0]
    feed(20 * DAY)
    b = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(ctx._ring) == size and b - a < 10_000, "memory does not grow with the series"
    restored = EpisodeContext.from_state(ctx.state())
    probe = [0.5, 3.0, 8.0, 30.0]
    assert [restored.news(s, s) for s in probe] == [ctx.news(s, s) for s in probe]
    assert restored.reference() == ctx.reference()


def test_a_fast_stream_keeps_the_rhythm_in_five_minute_buckets() -> None:
    ctx = EpisodeContext()
    ctx.set_cadence(1.0, 300)  # 1 Hz, one history entry per 300 records
    assert len(ctx._ring) == 3 * DAY + 6 + 1
    ctx.set_cadence(3600.0, 1)  # hourly records: 24 buckets a day, jitter rounds to 0 (1800 s / 3600 s)
    assert len(ctx._ring) == 3 * 24 + 1


def test_invalid_parameters_are_refused_in_words() -> None:
    with pytest.raises(ValueError, match="refractory_s must be a duration"):
        EpisodeContext(refractory_s=-1)
    with pytest.raises(ValueError, match="days must be a whole number"):
        RarityDetector(days=1.5)
    with pytest.raises(ValueError, match="jitter_s must be less than half of period_s"):
        RarityDetector(period_s=3600, jitter_s=1800)
    with pytest.raises(ValueError, match="period_s must be a duration"):
        RarityDetector(period_s=math.inf)


def test_a_restored_detector_keeps_its_rhythm_and_episode_and_an_old_state_still_loads() -> None:
    det = RarityDetector()
    det.set_cadence(300.0)
    x = noise(5)
    for d in range(1, 5):
        x[d * DAY + 24] += 4.0 + 0.3 * d  # a nightly spike
    x[4 * DAY + 100] += 3.0  # an alert 5 minutes before the restart: inside its refractory period
    for v in x[:4 * DAY + 101]:
        r = {"cpu": float(v)}
        det.score(r), det.learn(r), det.observe(r)
    restored = RarityDetector.from_state(det.state())
    probe = [{"cpu": 10.0}, {"cpu": 13.2}, {"cpu": 16.0}]
    assert [restored.score(r) for r in probe] == [det.score(r) for r in probe]
    assert restored._context.reference() == det._context.reference()
    old = det.state()
    old["version"] = "1"
    del old["context"]
    for key in ("refractory_s", "period_s", "days", "jitter_s"):
        del old["params"][key]
    assert RarityDetector.from_state(old).state()["params"]["refractory_s"] == 7200.0
