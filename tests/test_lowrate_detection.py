"""The low-rate multivariate defaults (`pca` with `statistic: maxz` through replay, agent/replay.py LOW_RATE_DEFAULTS) on
synthetic pump records with known answers: a spike, a level shift and a change of variance alert;
a slow drift of the temperature level does not."""

from __future__ import annotations

import numpy as np
import pytest

from agent.replay import LOW_RATE_DEFAULTS, default_sensor, replay_table
from drivers.recordings import Table

N, TRAIN, AT = 1200, 400, 800  # rows at 1 Hz, baseline rows, where the event starts


def pump(seed: int = 0) -> np.ndarray:
    """(N, 4): current, pressure, flow follow the load; the temperature follows it slowly."""
    rng = np.random.default_rng(seed)
    load = rng.normal(0, 1, N)  # a stationary operating point the baseline covers
    current = 10 + 0.5 * load + rng.normal(0, 0.05, N)
    pressure = 2 + 0.1 * load + rng.normal(0, 0.02, N)
    flow = 30 + 3 * load + rng.normal(0, 0.1, N)
    temp = 40 + np.convolve(load, np.ones(60) / 60, "same") * 0.2 + rng.normal(0, 0.02, N)
    return np.column_stack([current, pressure, flow, temp])


def alerts(x: np.ndarray, **params) -> np.ndarray:
    table = Table("pump.csv", np.arange(N, dtype=float), [str(i) for i in range(N)],
                  ["current", "pressure", "flow", "temperature"], x, "time")
    cfg = default_sensor("rows", table.columns)
    if params:
        cfg = cfg.model_copy(update={"detector": cfg.detector.model_copy(update={"params": params})})
    res = replay_table(table, cfg, train_rows=TRAIN)
    assert LOW_RATE_DEFAULTS["detector"]["type"] == "pca" and res.alert[:TRAIN].sum() == 0
    return res.alert.astype(bool)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slow_temperature_drift_adds_no_alert(seed):
    """A 400-row baseline calibrates its tail on a few hundred smoothed (so correlated) scores: on
    these stationary series 1.5-14 % of healthy rows are in alert at the 0.2 warning level (measured,
    seeds 0-5). A drift of the temperature level must add nothing to that."""
    x = pump(seed)
    healthy = alerts(x)[TRAIN:]
    assert healthy.mean() < 0.15
    # +1.5 C over the 800 scored rows (6.75 C/h, a machine warming up after a start): beyond the
    # ~9 times the range the level spanned in the baseline; its rate of change stays near healthy.
    x[TRAIN:, 3] += np.linspace(0, 1.5, N - TRAIN)
    assert alerts(x)[TRAIN:].mean() <= healthy.mean() + 0.03


@pytest.mark.parametrize("seed", [0, 1])
def test_spike_level_shift_and_variance_change_alert(seed):
    x = pump(seed)
    spike = x.copy()
    spike[AT:AT + 5, 1] += 1.0  # pressure: 5 rows at +50 noise sd, e.g. a water hammer
    a = alerts(spike)
    # From the spike's third row (3-of-5 debounce) while the 3-row smoothing still holds it, then it clears.
    assert a[AT + 2:AT + 7].all() and a[AT + 40:].mean() < 0.15

    shift = x.copy()
    shift[AT:, 2] -= 1.0  # flow falls off the load line (a leak): 10 sd of its noise around the line
    a = alerts(shift)
    assert a[AT + 30:].mean() > 0.9

    noisy = x.copy()
    noisy[AT:, 0] += np.random.default_rng(9).normal(0, 1.0, N - AT)  # current noise x20: cavitation
    a = alerts(noisy)
    assert a[AT + 30:].mean() > 0.9


def test_pca_median_smoothing_ignores_one_outlying_row_and_survives_a_restart():
    from models.pca import PcaDetector

    rng = np.random.default_rng(4)
    det = PcaDetector(smooth=3, median=True, log_features=True, rate_of_change="")

    def row():
        r = float(np.exp(rng.normal(0, 0.05)))
        return {"ch1.rms_g": 0.07 * r, "ch1.kurtosis": 3.0 * np.exp(rng.normal(0, 0.03)),
                "ch1.band_1000_10000_g2": 0.002 * r * r}

    for _ in range(300):
        x = row()
        det.learn(x)
        det.observe(x)
    glitch = dict(row(), **{"ch1.kurtosis": 400.0})  # one capture with a single-sample spike
    assert det.score(glitch) < 10  # the median of 3 rows does not see it (healthy rows: ~1-3)
    restored = PcaDetector.from_state(det.state())
    assert restored.score(glitch) == det.score(glitch)
    det.observe(glitch)
    fault = dict(row(), **{"ch1.kurtosis": 400.0})  # two in a row: now the median does
    assert det.score(fault) > 100
