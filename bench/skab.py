"""SKAB with its own protocol, through `pdm-agent replay`'s pipeline (agent/replay.py).

    cd /work/main && .venv/bin/python bench/skab.py                 # ~15 s: the table in docs/BENCHMARKS.md
    .venv/bin/python bench/skab.py --warning 0.2 0.3 0.4 0.5        # the threshold study, plus anomaly-free FAR

Per valve1 file: the first 400 rows are the healthy baseline (`--train-rows 400`), the rest is scored
with the recommended low-rate defaults (agent/replay.py LOW_RATE_DEFAULTS: detector `pca`, alert
policy 3-of-5). The prediction of a row is the replay's `alert` column. Metrics as SKAB defines them:

- outlier detection, one confusion matrix pooled over files: F1 = TP / (TP + (FP + FN) / 2),
  FAR = FP / (FP + TN), MAR = FN / (FN + TP);
- change-point detection: predicted change points are the transitions of the alert column; NAB-like
  score with a [cp, cp + 60 s] window per true change point (TSAD's tanh reward from A_tp at the change
  point to A_fp at the window end, first detection only; A_fp per detection outside every window,
  A_fn per missed window), normalised 100 (S - S_null) / (S_perfect - S_null) over all files.

Also reported, as a check of false alarms on another day: anomaly-free.csv cut into 8 pieces of
1150 rows (the length of a valve1 file), each replayed the same way (FAR only; no faults there).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import SensorConfig  # noqa: E402
from agent.replay import LOW_RATE_DEFAULTS, replay_table  # noqa: E402
from agent.replay_io import Table, read_csv  # noqa: E402

SKAB = pathlib.Path("/work/shared/datasets/skab")
CHANNELS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
            "Thermocouple", "Voltage", "Volume Flow RateRMS"]
TRAIN = 400
PROFILES = {"Standard": (1.0, -0.11, -1.0), "LowFP": (1.0, -0.22, -1.0), "LowFN": (1.0, -0.11, -2.0)}


def sensor(warning: float, params: dict) -> SensorConfig:
    alerts = dict(LOW_RATE_DEFAULTS["alerts"], warning=warning)
    alerts["hysteresis"] = min(alerts["hysteresis"], warning / 2)
    detector = dict(LOW_RATE_DEFAULTS["detector"], params=params)
    return SensorConfig(name="replay", protocol="sim", detector=detector, alerts=alerts)


def predict(table: Table, cfg: SensorConfig) -> np.ndarray:
    return replay_table(table, cfg, train_rows=TRAIN).alert[TRAIN:].astype(bool)


def tanh_reward(rel: float, a_tp: float, a_fp: float) -> float:
    """TSAD's reward at relative position rel in [0, 1] of a window: A_tp at 0, A_fp at 1."""
    x = -math.pi / 2 + math.pi * rel
    return (a_tp - a_fp) / 2 * (-math.tanh(x) / math.tanh(math.pi / 2)) + (a_tp - a_fp) / 2 + a_fp


def nab(files: list[tuple[np.ndarray, np.ndarray, np.ndarray]], profile: tuple[float, float, float]) -> float:
    """files: (ts, true change-point flags, binary prediction) of each test part."""
    a_tp, a_fp, a_fn = profile
    score = null = perfect = 0.0
    for ts, cps, pred in files:
        detected = ts[1:][np.abs(np.diff(pred.astype(int))) == 1]
        windows = [(t, t + 60.0) for t in ts[cps.astype(bool)]]
        used = np.zeros(len(detected), dtype=bool)
        for lo, hi in windows:
            inside = np.flatnonzero((detected >= lo) & (detected <= hi))
            if len(inside):
                used[inside] = True
                score += tanh_reward((detected[inside[0]] - lo) / (hi - lo), a_tp, a_fp)
            else:
                score += a_fn
        score += a_fp * np.count_nonzero(~used)
        null += a_fn * len(windows)
        perfect += a_tp * len(windows)
    return 100.0 * (score - null) / (perfect - null)


def evaluate(warning: float, params: dict) -> dict:
    cfg = sensor(warning, params)
    tp = fp = fn = tn = 0
    cp_files = []
    for path in sorted((SKAB / "valve1").glob("*.csv"), key=lambda p: int(p.stem)):
        table = read_csv(str(path), CHANNELS)
        labels = read_csv(str(path), ["anomaly", "changepoint"]).values[TRAIN:]
        y, pred = labels[:, 0] == 1, predict(table, cfg)
        tp += np.sum(pred & y)
        fp += np.sum(pred & ~y)
        fn += np.sum(~pred & y)
        tn += np.sum(~pred & ~y)
        cp_files.append((table.ts[TRAIN:], labels[:, 1], pred))
    free = read_csv(str(SKAB / "anomaly-free" / "anomaly-free.csv"), CHANNELS)
    alarms = []
    for start in range(0, len(free.ts) - 1150 + 1, 1150):
        part = Table(free.path, free.ts[start:start + 1150], free.stamps[start:start + 1150], free.columns,
                     free.values[start:start + 1150])
        alarms.append(predict(part, cfg))
    out = {
        "F1": tp / (tp + (fp + fn) / 2), "FAR %": 100 * fp / (fp + tn), "MAR %": 100 * fn / (fn + tp),
        "free FAR %": 100 * float(np.mean(np.concatenate(alarms))),
    }
    out.update({f"NAB {k}": nab(cp_files, v) for k, v in PROFILES.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warning", type=float, nargs="+", default=[LOW_RATE_DEFAULTS["alerts"]["warning"]])
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="pca detector parameter, e.g. smooth=5 (repeatable)")
    args = ap.parse_args()
    params = {}
    for item in args.param:
        key, _, value = item.partition("=")
        params[key] = type(getattr(__import__("models.pca").pca.PcaDetector(), key))(value)
    header = None
    for w in args.warning:
        r = evaluate(w, params)
        if header is None:
            header = ["warning", *r]
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
        print(f"| {w:g} | " + " | ".join(f"{v:.3f}" if k == "F1" else f"{v:.1f}" for k, v in r.items()) + " |")


if __name__ == "__main__":
    main()
