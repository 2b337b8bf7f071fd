"""`pdm-agent replay FILE --train-rows 400 --out OUT.csv` with no --config, as a user (and SKAB's
protocol) runs it on a `;`-separated 8-channel CSV of a pump: the temperatures warm up slowly and,
later, the flow falls by 4 % (a valve closing). The alert must come for the valve, not the warming."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
from skab_like import records, write_csv

N, TRAIN, AT = 1200, 400, 800


def test_replay_defaults_alert_on_the_valve_not_on_the_warming(tmp_path):
    src, out = tmp_path / "pump.csv", tmp_path / "out.csv"
    write_csv(src, records(N, seed=5, temp_drift=1.2, drift_from=TRAIN, step_at=AT, step=-1.3))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(src), "--train-rows", str(TRAIN),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N and rows[0]["timestamp"] == "2020-03-09 10:00:00"
    alert = np.array([int(row["alert"]) for row in rows])
    assert alert[:TRAIN].sum() == 0
    assert alert[TRAIN:AT].mean() < 0.05  # 400 rows of warming: at most a few rows in alert
    assert alert[AT + 30:].mean() > 0.9  # the valve: within 30 s, and it holds
    reasons = [row["reason"] for row in rows[AT + 30:] if row["alert"] == "1"]
    assert reasons.count("Volume Flow RateRMS") > 0.9 * len(reasons)  # the alert names the flow
