"""SKAB valve1 + the anomaly-free day: leave-one-file-out choice of the low-rate defaults.

    .venv/bin/python bench/skab.py                 # ~5 min (one idle core): the LOFO table in docs/detectors.md
    .venv/bin/python bench/skab.py --defaults      # ~5 s: only the shipped defaults, in-sample
    .venv/bin/python bench/skab.py --with-levels   # twice the grid: temperature levels as candidates too
    .venv/bin/python bench/skab.py --speed         # ~1 min: rows/s of the replay path, shipped vs previous

Protocol (SKAB's): per file, the first 400 rows are the healthy baseline (`--train-rows 400`, no
adaptation afterwards), the rest is scored through `pdm-agent replay`'s code path
(agent/replay.py `replay_table`: detector `pca`, calibration, alert policy 3-of-5). A row is
predicted anomalous while the policy holds a warning or alarm (the `alert` column). Metrics as SKAB
defines them, one confusion matrix pooled over files: F1 = TP / (TP + (FP + FN) / 2),
FAR = FP / (FP + TN), MAR = FN / (FN + TP). The anomaly-free day is cut into 8 parts of 1150 rows (a
valve1 file's length), each replayed the same way; its FAR is the false-alarm rate on another day.

Candidates: the statistic (`t2q`: (T²/k + Q/θ) / 2; `maxz`: the worst channel's squared z, or the
weighted Q/θ; models/pca.py), smoothing window (`smooth` rows), the rows over which a temperature's rate
of change is taken (`horizon`, at least `smooth`), principal variance kept and the warning threshold;
temperature channels enter by their rate of change (`roc`; `--with-levels` adds `level`, their value). The rule, fixed
before looking at any result: among candidates with FAR <= 10 % on the valve1 files and FAR <= 5 %
on the anomaly-free parts of the training folds, take the highest F1 (ties: the higher warning, then
the smaller smoothing). Leave-one-file-out over the 24 files (16 valve1 + 8 anomaly-free parts):
each file is predicted with the candidate the rule picks on the other 23; the held-out predictions
are pooled into the cross-validated figures. The in-sample row is the candidate picked on all 24
(the shipped default). NAB-like change-point scores (60 s windows, TSAD's tanh reward) are given
for it too, and the share of rows in alert when the anomaly-free day is replayed whole after its first
400 rows (`pdm-agent replay anomaly-free.csv --train-rows 400`): not part of the rule (one file of 2.5
hours against a 7-minute baseline), reported so that nobody mistakes the 8-part figure for it.
"""

from __future__ import annotations

import argparse
import itertools
import math
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.config import SensorConfig, parse_sensor  # noqa: E402
from agent.policy import AlertPolicy, PolicyConfig  # noqa: E402
from agent.records import Score  # noqa: E402
from agent.replay import LOW_RATE_DEFAULTS, replay_table  # noqa: E402
from drivers.recordings import Table, read_csv  # noqa: E402

SKAB = pathlib.Path("/work/shared/datasets/skab")
CHANNELS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
            "Thermocouple", "Voltage", "Volume Flow RateRMS"]
TRAIN, PART = 400, 1150
MAX_FAR, MAX_FREE_FAR = 0.10, 0.05
SMOOTH = (1, 3, 5, 10, 20)
# Temperatures enter by their rate of change only: their level drifts with ambient and load over
# hours, which no 400-row baseline covers (a requirement, not a tuning result). `--with-levels`
# adds the level transform to the candidates to show what that costs on held-out files.
TEMPS = {"roc": "temp|thermo"}
VARIANCE = (0.95, 0.99)
STATISTIC = ("t2q", "maxz")  # models/pca.py: (T²/k + Q/θ) / 2, or the worst channel's z² (or w·Q/θ)
HORIZON = (5, 10)  # rows over which a temperature's rate of change is taken (at least `smooth`)
WARNING = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PROFILES = {"Standard": (1.0, -0.11, -1.0), "LowFP": (1.0, -0.22, -1.0), "LowFN": (1.0, -0.11, -2.0)}


@dataclass
class Part:
    """One replayed file: test-part labels (None on the anomaly-free day) and its timestamps."""

    name: str
    table: Table
    y: np.ndarray | None
    cps: np.ndarray | None


def parts() -> list[Part]:
    out = []
    for path in sorted((SKAB / "valve1").glob("*.csv"), key=lambda p: int(p.stem)):
        labels = read_csv(str(path), ["anomaly", "changepoint"]).values[TRAIN:]
        out.append(Part(f"valve1/{path.name}", read_csv(str(path), CHANNELS), labels[:, 0] == 1, labels[:, 1]))
    free = read_csv(str(SKAB / "anomaly-free" / "anomaly-free.csv"), CHANNELS)
    for k, start in enumerate(range(0, len(free.ts) - PART + 1, PART)):
        sl = slice(start, start + PART)
        table = Table(free.path, free.ts[sl], free.stamps[sl], free.columns, free.values[sl], free.time_column)
        out.append(Part(f"anomaly-free/{k}", table, None, None))
    return out


def detector_config(smooth: int, temps: str, variance: float, statistic: str, horizon: int) -> SensorConfig:
    params = {"smooth": smooth, "rate_of_change": TEMPS[temps], "variance": variance, "statistic": statistic,
              "horizon": horizon}
    detector = dict(LOW_RATE_DEFAULTS["detector"], params=params)
    return parse_sensor(name="replay", protocol="sim", detector=detector, alerts=LOW_RATE_DEFAULTS["alerts"])


def alerts_at(score: np.ndarray, warning: float) -> np.ndarray:
    """The alert column the replay writes for these (ready) scores at this warning level: the
    daemon's AlertPolicy with the low-rate defaults (hysteresis capped at warning / 2)."""
    a = LOW_RATE_DEFAULTS["alerts"]
    policy = AlertPolicy(PolicyConfig(warning, a["alarm"], a["debounce_n"], a["debounce_m"],
                                      min(a["hysteresis"], warning / 2)), device="bench", sensor="replay")
    out = np.zeros(len(score), dtype=bool)
    for i, s in enumerate(score.tolist()):
        policy.update(Score("replay", float(i), s, True, "pca"))
        out[i] = policy.active
    return out


def candidate_predictions(data: list[Part], smooth: int, temps: str, variance: float, statistic: str,
                          horizon: int) -> dict:
    """{warning: [prediction per part]} for one detector setting (scores computed once)."""
    cfg = detector_config(smooth, temps, variance, statistic, horizon)
    scores = [replay_table(p.table, cfg, train_rows=TRAIN).score[TRAIN:] for p in data]
    return {w: [alerts_at(s, w) for s in scores] for w in WARNING}


def counts(data: list[Part], preds: list[np.ndarray], keep: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, tn] over valve1 parts and [alarms, rows] over anomaly-free parts in `keep`."""
    c = np.zeros(6)
    for p, pred, k in zip(data, preds, keep):
        if not k:
            continue
        if p.y is None:
            c[4:] += pred.sum(), len(pred)
        else:
            c[:4] += [np.sum(pred & p.y), np.sum(pred & ~p.y), np.sum(~pred & p.y), np.sum(~pred & ~p.y)]
    return c


def metrics(c: np.ndarray) -> dict:
    tp, fp, fn, tn, alarms, rows = c
    return {"F1": tp / (tp + (fp + fn) / 2), "FAR %": 100 * fp / (fp + tn), "MAR %": 100 * fn / (fn + tp),
            "free FAR %": 100 * alarms / rows}


def choose(table: dict, data: list[Part], keep: np.ndarray):
    """The rule (module docstring) on the parts in `keep`."""
    best, best_key = None, None
    for cand, preds in table.items():
        m = metrics(counts(data, preds, keep))
        if m["FAR %"] > 100 * MAX_FAR or m["free FAR %"] > 100 * MAX_FREE_FAR:
            continue
        key = (round(m["F1"], 6), cand[-1], -cand[0])
        if best_key is None or key > best_key:
            best, best_key = cand, key
    return best


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


def row(label: str, m: dict, extra: str = "") -> str:
    return (f"| {label} | {m['F1']:.3f} | {m['FAR %']:.1f} | {m['MAR %']:.1f} | {m['free FAR %']:.1f} |"
            + (f" {extra} |" if extra else ""))


def whole_day(cand=None) -> float:
    """% of the anomaly-free day's rows in alert, the file replayed whole after its first 400 rows
    (`pdm-agent replay anomaly-free.csv --train-rows 400`): 2.5 hours scored against a 7-minute
    baseline while the fluid warms and the flow wanders. `cand` None: the shipped defaults,
    through `replay()` and its `alert` column exactly as the command writes it."""
    path = str(SKAB / "anomaly-free" / "anomaly-free.csv")
    if cand is None:
        from agent.replay import replay

        return 100.0 * float(np.mean(replay(path, train_rows=TRAIN).alert[TRAIN:]))
    smooth, temps, variance, statistic, horizon, warning = cand
    res = replay_table(read_csv(path, CHANNELS), detector_config(smooth, temps, variance, statistic, horizon),
                       train_rows=TRAIN)
    return 100.0 * float(np.mean(alerts_at(res.score[TRAIN:], warning)))


def speed(data: list[Part], repeats: int = 3) -> None:
    """Rows/s of the whole replay path (pipeline, detector, calibration, policy) over the valve1
    files: the shipped defaults and the previous ones (t2q, smooth 10, variance 0.99), interleaved
    runs, medians and their ratio."""
    from agent.replay import default_sensor

    configs = {"shipped (maxz, smooth 3)": default_sensor("rows", CHANNELS),
               "previous (t2q, smooth 10)": detector_config(10, "roc", 0.99, "t2q", 10)}
    files = [p for p in data if p.y is not None]
    rows = sum(len(p.table.ts) for p in files)
    times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(repeats):
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            for p in files:
                replay_table(p.table, cfg, train_rows=TRAIN)
            times[name].append(time.perf_counter() - t0)
    rate = {k: rows / float(np.median(v)) for k, v in times.items()}
    for k, r in rate.items():
        print(f"{k}: {r:,.0f} rows/s (median of {repeats}, {rows} rows of 8 channels)")
    a, b = rate.values()
    print(f"ratio shipped / previous: {a / b:.2f}")


def describe(cand) -> str:
    smooth, temps, variance, statistic, horizon, warning = cand
    return (f"{statistic}, smooth {smooth}, temperatures {temps} over {max(smooth, horizon)} rows, "
            f"variance {variance:g}, warning {warning:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--defaults", action="store_true", help="only the shipped defaults (agent/replay.py)")
    ap.add_argument("--with-levels", action="store_true", help="also candidates with temperature levels")
    ap.add_argument("--speed", action="store_true", help="rows/s of the replay path, shipped vs previous defaults")
    args = ap.parse_args()
    if args.speed:
        speed(parts())
        return
    if args.with_levels:
        TEMPS["level"] = ""
    t0 = time.perf_counter()
    data = parts()
    everything = np.ones(len(data), dtype=bool)
    print("| setting | F1 | FAR % | MAR % | free FAR % | NAB Standard / LowFP / LowFN |")
    print("|---|---|---|---|---|---|")
    if args.defaults:
        from models.pca import PcaDetector

        d = PcaDetector(**LOW_RATE_DEFAULTS["detector"].get("params", {}))
        temps = next(k for k, v in TEMPS.items() if v == d.rate_of_change)
        w = LOW_RATE_DEFAULTS["alerts"]["warning"]
        preds = candidate_predictions(data, d.smooth, temps, d.variance, d.statistic, d.horizon)[w]
        cands = {(d.smooth, temps, d.variance, d.statistic, d.horizon, w): preds}
    else:
        cands = {}
        for smooth, temps, variance, stat, horizon in itertools.product(SMOOTH, TEMPS, VARIANCE, STATISTIC, HORIZON):
            if horizon < smooth and horizon != HORIZON[-1]:
                continue  # the rate is taken over max(smooth, horizon) rows: the same candidate again
            for w, preds in candidate_predictions(data, smooth, temps, variance, stat, horizon).items():
                cands[(smooth, temps, variance, stat, horizon, w)] = preds
    chosen_all = choose(cands, data, everything) if not args.defaults else next(iter(cands))
    preds = cands[chosen_all]
    cp = [(p.table.ts[TRAIN:], p.cps, pr) for p, pr in zip(data, preds) if p.y is not None]
    nabs = " / ".join(f"{nab(cp, v):.1f}" for v in PROFILES.values())
    print(row(f"in-sample: {describe(chosen_all)}", metrics(counts(data, preds, everything)), nabs))
    day = whole_day(None if args.defaults else chosen_all)
    print(f"\nthe whole anomaly-free day replayed after a 400-row baseline: {day:.1f} % of its rows in alert\n")
    if args.defaults:
        return
    held = np.zeros(6)
    picks = []
    for i, p in enumerate(data):
        keep = everything.copy()
        keep[i] = False
        cand = choose(cands, data, keep)
        picks.append(cand)
        only = ~keep
        held += counts(data, cands[cand], only)
    print(row("leave-one-file-out (24 folds)", metrics(held)))
    print()
    print("| held-out file | chosen on the other 23 |")
    print("|---|---|")
    for p, cand in zip(data, picks):
        print(f"| {p.name} | {describe(cand)} |")
    same = sum(c == chosen_all for c in picks)
    print(f"\n{same} of {len(picks)} folds chose the in-sample setting; {len(cands)} candidates; "
          f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
