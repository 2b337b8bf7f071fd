"""Replay (docs/replay.md): readers, the output contract, --train-rows, the online univariate detector."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from agent import replay
from drivers import recordings as replay_io
from drivers.recordings import InputError, capture_time, list_bursts, read_burst, read_csv


def write_rows(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)


def pump_rows(n: int, fault_at: int, seed: int = 0):
    """1 Hz rows of a pump: current and flow follow the load; from fault_at, the flow falls off."""
    rng = np.random.default_rng(seed)
    load = rng.normal(0, 0.3, n)
    current = 10 + load + rng.normal(0, 0.05, n)
    flow = 30 + 3 * load + rng.normal(0, 0.1, n)
    flow[fault_at:] -= 4.0
    temp = 40 + 0.002 * np.arange(n) + rng.normal(0, 0.02, n)
    t0 = 1_700_000_000
    return [[str(t0 + i), f"{c:.4f}", f"{q:.4f}", f"{tt:.3f}", "0"] for i, (c, q, tt) in enumerate(zip(current, flow, temp))]


def test_csv_replay_flags_the_fault_and_keeps_the_contract(tmp_path):
    path = tmp_path / "pump.csv"
    write_rows(path, ["timestamp", "current", "flow", "temp", "anomaly"], pump_rows(1200, 900), delimiter=";")
    table = read_csv(str(path))
    assert table.columns == ["current", "flow", "temp"]  # label column left out
    res = replay.replay(str(path), train_rows=400)
    out = tmp_path / "out.csv"
    replay.write_csv(str(out), res)
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["timestamp", "score", "alert"] and len(rows) == 1201
    scores = np.array([float(r[1]) for r in rows[1:]])
    alerts = np.array([int(r[2]) for r in rows[1:]])
    assert np.all((scores >= 0) & (scores <= 1)) and set(alerts) <= {0, 1}
    assert alerts[:400].sum() == 0  # the baseline is never alerted on
    assert alerts[400:880].mean() < 0.05 and alerts[950:].mean() > 0.9


def test_train_rows_ends_learning_after_exactly_n_records(tmp_path):
    path = tmp_path / "p.csv"
    write_rows(path, ["time", "a", "b"], [[str(i), str(np.sin(i)), str(np.cos(i))] for i in range(100)])
    res = replay.replay(str(path), train_rows=40)
    ready = [e[1] for e in res.extra]
    assert ready[:40] == [0] * 40 and ready[40:] == [1] * 60


def _temperature_with_drift_and_step(tmp_path):
    """One reading a minute for 6 days with a daily cycle; a slow drift on day 4, a 2-hour step on day 6."""
    rng = np.random.default_rng(3)
    n = 6 * 1440
    x = 60 + 0.5 * np.sin(np.arange(n) * 2 * np.pi / 1440) + rng.normal(0, 0.1, n)
    x[3 * 1440:4 * 1440] += np.linspace(0, 3.0, 1440)  # slow drift over a day, then back
    x[5 * 1440:5 * 1440 + 120] += 4.0  # a 2-hour step
    path = tmp_path / "temp.csv"
    write_rows(path, ["time", "machine_temp"], [[str(60 * i), f"{v:.3f}"] for i, v in enumerate(x)])
    return path


def test_univariate_default_flags_the_onset_of_a_drift_and_a_step(tmp_path):
    """Defaults (detector `rarity`, learns online): an alert when something new starts, quiet otherwise."""
    res = replay.replay(str(_temperature_with_drift_and_step(tmp_path)), train_rows=0)
    alert = res.alert.astype(bool)
    healthy = np.r_[1440:3 * 1440, 4 * 1440 + 240:5 * 1440]
    assert alert[healthy].mean() < 0.005
    assert alert[3 * 1440:3 * 1440 + 600].any(), "the drift is flagged while it leaves the known range"
    assert alert[5 * 1440] and res.score[5 * 1440] >= 0.9, "the step alarms on its first record"


def test_trend_holds_the_alert_while_the_level_is_out_of_range(tmp_path):
    """`trend` (a frozen healthy range, 3-of-5 policy) keeps the alert up for the whole excursion."""
    from drivers.recordings import read_csv

    table = read_csv(str(_temperature_with_drift_and_step(tmp_path)), None)
    cfg = replay.default_sensor("rows", table.columns)
    cfg = cfg.model_copy(update={
        "detector": cfg.detector.model_copy(update={"type": "trend"}),
        "alerts": cfg.alerts.model_copy(update={"debounce_n": 3, "debounce_m": 5}),
    })
    alert = replay.replay_table(table, cfg, train_rows=0).alert.astype(bool)
    healthy = np.r_[1440:3 * 1440, 4 * 1440 + 240:5 * 1440]
    assert alert[healthy].mean() < 0.02
    assert alert[3 * 1440 + 1000:4 * 1440].mean() > 0.5
    assert alert[5 * 1440 + 5:5 * 1440 + 120].mean() > 0.8


def test_burst_directory_sorted_by_capture_time(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "bursts"
    d.mkdir()
    rate, n = 2000.0, 2048
    t = np.arange(n) / rate
    for k in range(45):
        x = rng.normal(0, 0.1, (n, 2))
        if k >= 38:  # a growing 300 Hz tone on channel 1
            x[:, 0] += 0.5 * np.sin(2 * np.pi * 300 * t)
        name = f"2004.02.12.{10 + k // 60:02d}.{k % 60:02d}.39" if k % 2 else f"2004-02-12T{10 + k // 60:02d}:{k % 60:02d}:39.txt"
        sep = "\t" if k % 2 else ","
        np.savetxt(d / name, x, delimiter=sep, fmt="%.5f")
    files = list_bursts(str(d))
    assert [os.path.basename(p) for _, p in files][:2] == ["2004-02-12T10:00:39.txt", "2004.02.12.10.01.39"]
    res = replay.replay(str(d), rate=rate, train_rows=30)
    assert len(res.score) == 45 and res.channels == ["ch1", "ch2"]
    assert res.alert[:38].sum() == 0 and res.alert[41:].all()
    assert res.ts[1] - res.ts[0] == 60.0


def test_bad_input_names_file_and_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("time,a\n1,2\n2,3,4\n")
    with pytest.raises(InputError, match=r"bad.csv:3: 3 fields"):
        read_csv(str(p))
    b = tmp_path / "b"
    b.mkdir()
    (b / "2004.02.12.10.32.39").write_text("1 2\n3 x\n")
    with pytest.raises(InputError, match=r"2004.02.12.10.32.39:2: not a number"):
        read_burst(str(b / "2004.02.12.10.32.39"))
    (b / "notes.txt").write_text("1\n")
    with pytest.raises(InputError, match="no capture time"):
        list_bursts(str(b))
    assert capture_time("x") is None
    with pytest.raises(replay.ReplayError, match="only 2 records"):
        p.write_text("time,a\n1,2\n2,3\n")
        replay.replay(str(p), train_rows=5)


def test_time_column_problems_are_named_with_their_line(tmp_path):
    path = tmp_path / "t.csv"
    write_rows(path, ["timestamp", "v"], [["1700000000000", "1"], ["1700000300000", "2"], ["1700000600000", "3"]])
    table = replay_io.read_csv(str(path), None)
    assert table.ts.tolist() == [1700000000.0, 1700000300.0, 1700000600.0]  # epoch milliseconds
    for rows, expected in (([["0", "1"], ["nan", "2"]], ":3: column 'timestamp': 'nan' is not a time"),
                           ([["10", "1"], ["5", "2"]], ":3: column 'timestamp': the time goes back"),
                           ([["1e300", "1"]], ":2: column 'timestamp': '1e300' is not a time")):
        write_rows(path, ["timestamp", "v"], rows)
        with pytest.raises(replay_io.InputError, match=expected):
            replay_io.read_csv(str(path), None)
