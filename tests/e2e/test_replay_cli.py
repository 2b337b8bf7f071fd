"""`pdm-agent replay` as a user runs it: the console script, files in, CSV and PNG out, exit codes."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np



def cli(*args):
    return subprocess.run([sys.executable, "-m", "agent.cli", "replay", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_replay_csv_with_plot(tmp_path):
    rng = np.random.default_rng(1)
    n = 900
    load = rng.normal(0, 0.3, n)
    flow = 30 + 3 * load + rng.normal(0, 0.1, n)
    noise = rng.normal(0, 0.05, n)
    flow[700:] -= 4.0  # the known anomaly
    src = tmp_path / "in.csv"
    with open(src, "w") as f:
        f.write("datetime\tcurrent\tflow\ttemp\n")
        for i in range(n):
            f.write(f"2020-03-09 10:{i // 60 % 60:02d}:{i % 60:02d}\t{10 + load[i] + noise[i]:.4f}\t{flow[i]:.4f}\t{40 + 0.002 * i + 0.02 * noise[i]:.3f}\n")
    out, png = tmp_path / "out.csv", tmp_path / "plot.png"
    r = cli(src, "--out", out, "--train-rows", 400, "--plot", png)
    assert r.returncode == 0, r.stderr
    assert "records/s" in r.stderr and "Traceback" not in r.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["timestamp", "score", "alert"] and len(rows) == n
    assert rows[0]["timestamp"] == "2020-03-09 10:00:00"
    alert = np.array([int(r["alert"]) for r in rows])
    assert alert[:400].sum() == 0 and alert[720:].mean() > 0.9
    assert alert[400:690].mean() < 0.5  # short baselines give false alarms: see docs/replay.md
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_bursts_and_bad_input(tmp_path):
    d = tmp_path / "bursts"
    d.mkdir()
    rng = np.random.default_rng(2)
    for k in range(35):
        np.savetxt(d / f"2004.02.12.10.{k:02d}.00", rng.normal(0, 0.1, (1024, 2)), fmt="%.5f")
    out = tmp_path / "out.csv"
    r = cli(d, "--out", out, "--rate", 20000, "--train-rows", 30, "--columns", "b1,b2")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("timestamp,score,alert") and len(lines) == 36
    assert lines[1].startswith("2004-02-12T10:00:00.000Z,")

    r = cli(d, "--out", out)  # no --rate
    assert r.returncode == 2 and "--rate" in r.stderr and "Traceback" not in r.stderr
    (d / "2004.02.12.11.00.00").write_text("0.1 0.2\n0.3\n")
    r = cli(d, "--out", out, "--rate", 20000)
    assert r.returncode == 2 and "2004.02.12.11.00.00:2" in r.stderr and "Traceback" not in r.stderr
