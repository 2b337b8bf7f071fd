"""Burst directories with the recommended defaults (no --config): a synthetic run-to-failure test
(bench/runtofailure.py, IMS-like) through the real `pdm-agent replay` process."""

from __future__ import annotations

import csv
import pathlib
import subprocess
import sys

import numpy as np

sys.path.append(str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

import runtofailure as rtf  # noqa: E402
from agent.replay import BURST_DEFAULTS  # noqa: E402


def test_run_to_failure_alarms_early_and_is_silent_before(tmp_path):
    # Shorter bursts and two bearings keep the files small; cadence, rate, wander, glitches and the
    # defect's growth are the IMS-like defaults. The defaults learn 2 days, then 1.5 healthy days.
    learn = BURST_DEFAULTS["detector"]["learn_seconds"]
    spec = rtf.RunSpec(days=learn / 86400 + 3.0, onset_days=learn / 86400 + 1.5, samples=4096, channels=2, seed=7)
    onset, end = rtf.write(spec, str(tmp_path / "run"))
    out = tmp_path / "out.csv"
    r = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(tmp_path / "run"), "--rate", "20000",
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == spec.bursts
    ts = rtf.START + np.arange(len(rows)) * spec.every_min * 60
    alert = np.array([int(row["alert"]) for row in rows], dtype=bool)
    ready = np.array([int(row["ready"]) for row in rows], dtype=bool)
    assert ready[ts >= rtf.START + learn].all() and not ready[ts < rtf.START + learn - 600].any()
    assert not alert[ts < onset].any()  # no false alarm in 1.5 healthy days after learning
    quiet = np.flatnonzero(~alert)
    assert quiet[-1] < len(alert) - 1  # in alert at the failure ...
    lead = end - ts[quiet[-1] + 1]
    assert lead > 0.3 * (end - onset)  # ... continuously from well before it


def test_a_single_glitch_burst_neither_alerts_nor_spoils_the_baseline(tmp_path):
    """A sensor glitch (one sample of 3 g) in a learning burst and in a scored one: with median
    smoothing over bursts neither moves the score, and a later real defect is still caught."""
    from agent.replay import replay

    days = BURST_DEFAULTS["detector"]["learn_seconds"] / 86400
    spec = rtf.RunSpec(days=days + 1.5, onset_days=days + 0.5, samples=2048, channels=1, glitch_rate=0.0, seed=3)
    d = tmp_path / "run"
    d.mkdir()
    for k, (ts, x) in enumerate(rtf.generate(spec)):
        if k in (100, int(days * 144) + 20):  # one while learning, one while scoring
            x[100, 0] += 3.0
        np.savetxt(d / rtf.name(ts), x, fmt="%.3f")
    res = replay(str(d), rate=20000.0)
    onset, _ = rtf.truth(spec)
    assert not res.alert[res.ts < onset].any()
    k = int(days * 144) + 20
    assert res.score[k - 2:k + 3].max() < 0.5
    assert res.alert[-10:].all()
