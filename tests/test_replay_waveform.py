"""Replay of raw waveform CSVs: windowed and featurized exactly as the daemon does, read the same
way by `model train`, and an honest summary when the file is shorter than the baseline."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import numpy as np
import pytest

from agent import replay
from agent.config import load_config
from agent.pipeline import SensorPipeline
from agent.records import Frame
from drivers.recordings import read_csv, time_column_rate


def machine(rate: float, seconds: float, fault_at: float, seed: int = 0) -> np.ndarray:
    """(n, 2) samples ax (g), temp (C): a 30 Hz running speed in noise; from fault_at a 400 Hz tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    ax = 0.05 * np.sin(2 * np.pi * 30 * t) + rng.normal(0, 0.1, len(t))
    ax[t >= fault_at] += 0.3 * np.sin(2 * np.pi * 400 * t[t >= fault_at])
    return np.column_stack([ax, 40 + 0.01 * t + rng.normal(0, 0.01, len(t))])


def write_wave(path, samples, rate, time_col: str | None = "time"):
    with open(path, "w") as f:
        f.write(("time," if time_col else "") + "ax,temp\n")
        for i, (a, c) in enumerate(samples):
            f.write((f"{i / rate:.6f}," if time_col else "") + f"{a:.5f},{c:.3f}\n")


def config(tmp_path, size=512, hop=256, learn=10.0, rate=None):
    p = tmp_path / "c.yaml"
    p.write_text(f"""device: {{id: t}}
sensors:
  - name: s1
    protocol: sim
    channels: [ax, temp]
    {f'sample_rate: {rate}' if rate else ''}
    window: {{size: {size}, hop: {hop}}}
    detector: {{learn_seconds: {learn}}}
""")
    return str(p)


def test_time_column_decides_waveform_or_records(tmp_path):
    write_wave(tmp_path / "w.csv", machine(2000, 1, 99), 2000)
    assert time_column_rate(read_csv(str(tmp_path / "w.csv"))) == 2000.0
    (tmp_path / "r.csv").write_text("time,a,b\n" + "".join(f"{i * 0.01},{i},{2 * i}\n" for i in range(50)))
    assert time_column_rate(read_csv(str(tmp_path / "r.csv"))) is None  # 100 Hz: records


def test_waveform_csv_scores_like_the_daemon_pipeline(tmp_path):
    """Same windows, timestamps and scores as a SensorPipeline fed the samples in uneven frames."""
    rate = 2000.0
    x = machine(rate, 40, fault_at=30)
    write_wave(tmp_path / "w.csv", x, rate)
    cfg_path = config(tmp_path)
    res = replay.replay(str(tmp_path / "w.csv"), config=cfg_path)
    n_windows = (len(x) - 512) // 256 + 1
    assert len(res.score) == n_windows
    np.testing.assert_allclose(res.ts, (np.arange(n_windows) * 256 + 511) / rate, atol=1e-6)

    x = read_csv(str(tmp_path / "w.csv")).values  # the samples as written (rounded)
    sensor = load_config(cfg_path).sensors[0].model_copy(update={"sample_rate": rate})
    daemon = SensorPipeline(device="t", sensor_cfg=sensor, aggregate_interval=1e12, emit=lambda a: None)
    scores, start, rng = [], 0, np.random.default_rng(5)
    while start < len(x):
        end = min(len(x), start + int(rng.integers(1, 3000)))
        scores += [s.value for s in daemon.process(Frame("s1", (end - 1) / rate, ("ax", "temp"), x[start:end]))]
        start = end
    np.testing.assert_allclose(res.score, scores, rtol=1e-9, atol=1e-12)
    ready = np.array([e[1] for e in res.extra], dtype=bool)
    healthy = ready & (res.ts < 30)
    assert healthy.sum() > 50 and res.alert[healthy].mean() < 0.05
    assert res.alert[res.ts > 31].mean() > 0.9


def test_cli_waveform_csv_short_file_says_so_and_train_rows_detects(tmp_path):
    rate = 3200.0
    write_wave(tmp_path / "w.csv", machine(rate, 60, fault_at=40), rate)
    out = tmp_path / "out.csv"
    run = lambda *a: subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(tmp_path / "w.csv"),
                                     "--out", str(out), *map(str, a)], capture_output=True, text=True, timeout=120)
    r = run()  # product defaults: 4096-sample windows, learn_seconds 3600 > the file's minute
    assert r.returncode == 0, r.stderr
    assert "learn_seconds is 3600 s" in r.stderr and "none scored" in r.stderr and "0 alert" not in r.stderr
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == (len(machine(rate, 60, 40)) - 4096) // 4096 + 1
    assert {r["ready"] for r in rows} == {"0"}

    r = run("--train-rows", 20)
    assert r.returncode == 0 and "note" not in r.stderr, r.stderr
    rows = list(csv.DictReader(open(out)))
    alert = np.array([int(r["alert"]) for r in rows])
    t = np.array([float(r["timestamp"]) for r in rows])
    assert alert[:20].sum() == 0 and alert[(t > 20) & (t < 40)].mean() < 0.1 and alert[t > 42].mean() > 0.9
    assert re.search(r"\d+ scored, [1-9]\d* alert", r.stderr)


def test_rate_makes_a_csv_without_time_column_raw_samples(tmp_path):
    rate = 2000.0
    write_wave(tmp_path / "w.csv", machine(rate, 20, fault_at=99), rate, time_col=None)
    res = replay.replay(str(tmp_path / "w.csv"), rate=rate, config=config(tmp_path))
    assert len(res.score) == (40000 - 512) // 256 + 1 and res.ts[0] == pytest.approx(511 / rate)
    write_wave(tmp_path / "t.csv", machine(rate, 20, fault_at=99), rate)
    res = replay.replay(str(tmp_path / "t.csv"), rate=1000.0, config=config(tmp_path))
    assert "time column steps at 2000 Hz; using the stated 1000 Hz" in res.note
    res = replay.replay(str(tmp_path / "w.csv"), config=config(tmp_path, rate=2000))  # config's sample_rate
    assert len(res.score) == (40000 - 512) // 256 + 1
    (tmp_path / "r.csv").write_text("time,ax,temp\n" + "".join(f"{i},{np.sin(i)},40\n" for i in range(600)))
    res = replay.replay(str(tmp_path / "r.csv"), rate=100.0, config=config(tmp_path))
    assert "steps by 1 s, like records, but the stated rate 100 Hz makes its rows raw samples" in res.note
    assert len(res.score) == (600 - 512) // 256 + 1


def test_waveform_csv_shorter_than_a_window_is_an_error(tmp_path):
    write_wave(tmp_path / "w.csv", machine(2000.0, 0.1, 99), 2000.0)
    with pytest.raises(replay.ReplayError, match=r"w.csv: 200 samples at 2000 Hz, fewer than one window"):
        replay.replay(str(tmp_path / "w.csv"))


def test_model_train_reads_a_waveform_csv_as_replay_does(tmp_path):
    rate = 3200.0
    write_wave(tmp_path / "w.csv", machine(rate, 60, fault_at=99), rate)
    res = replay.replay(str(tmp_path / "w.csv"), train_rows=5)
    r = subprocess.run([sys.executable, "-m", "agent.cli", "model", "train", str(tmp_path / "w.csv"),
                        "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = re.search(r"trained \w+ on (\d+) rows \((\d+) features\), held back (\d+)", r.stdout)
    assert int(m.group(1)) + int(m.group(3)) == len(res.score)
    assert int(m.group(2)) == len(replay_feature_names(res))


def replay_feature_names(res):
    from models.features import FeatureSpec, feature_names

    return feature_names(FeatureSpec.for_channels(3200.0, tuple(res.channels)))
