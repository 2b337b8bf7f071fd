"""CWRU bearing faults: trained on the normal baseline only, AUC per fault type and load.

    .venv/bin/python bench/cwru.py                    # ~1 min: the daemon default and the burst defaults
    .venv/bin/python bench/cwru.py --detector zmax    # any registry detector, "name:key=value,..."

Data preparation is bench/detectors.py's `cwru_data` (shared code): drive-end and fan-end channels,
Normal_0 (48 kHz) decimated by 4 to 12 kHz like the fault files, 1024-sample windows, hop 256,
models/features.extract_batch. The first 70 % of Normal_0 is the baseline, the last 30 % the healthy
hold-out. Each detector learns the baseline in a StreamingModel (then frozen) and scores every
file from a copy of that state; a detector that smooths over k windows (`pca` with `smooth`) is
scored from each file's k-th window on (the first k - 1 fill its context, so no fault window is
averaged with the baseline's or another file's). Per row: the ROC AUC of "fault file windows score above held-out
normal windows" and the fraction of the fault file's windows at or above the warning level (0.5).

Detectors: the daemon's default (registry "auto") and the detector `pdm-agent replay` uses for
burst directories (agent/replay.py BURST_DEFAULTS, its type and params, on the same features).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))

from detectors import auc, cwru_data, to_dicts, train  # noqa: E402
from agent.replay import BURST_DEFAULTS  # noqa: E402
from models.streaming import StreamingModel  # noqa: E402


def burst_candidate() -> str:
    d = BURST_DEFAULTS["detector"]
    params = ",".join(f"{k}={json.dumps(v)}" for k, v in d.get("params", {}).items())
    return d["type"] + (f":{params}" if params else "")


def table(candidate: str, data: dict) -> None:
    model = train(candidate, data)
    state = model.state()
    names = data["names"]

    def scores(rows):
        m = StreamingModel.from_state(state)
        # A detector smoothing over k windows scores a recording from its k-th window on: the
        # first k - 1 only fill its context (the baseline's last windows must not dilute a fault).
        skip = getattr(m.detector, "smooth", 1) - 1
        # Dated one window after the baseline (a date past year 9999 cannot be written as learned_at).
        t = len(data["train"]) * data["step_s"]
        return np.array([m.update(x, t)[0] for x in to_dicts(rows, names)])[skip:]

    healthy = scores(data["healthy"])
    print(f"\n{candidate}: healthy hold-out {len(healthy)} windows, {100 * np.mean(healthy >= 0.5):.1f} % >= 0.5\n")
    print("| fault | 0 hp AUC | 3 hp AUC | 0 hp det@0.5 | 3 hp det@0.5 |")
    print("|---|---|---|---|---|")
    faults = data["faults"]
    for kind in sorted({k.rsplit("_", 1)[0] for k in faults}):
        row = []
        for load in ("0", "3"):
            s = scores(faults[f"{kind}_{load}"])
            row.append((auc(healthy, s), float(np.mean(s >= 0.5))))
        print(f"| {kind} | {row[0][0]:.3f} | {row[1][0]:.3f} | {row[0][1]:.2f} | {row[1][1]:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", action="append", help="registry candidate (default: auto and the burst defaults)")
    args = ap.parse_args()
    data = cwru_data()
    for candidate in args.detector or ["auto", burst_candidate()]:
        table(candidate, data)


if __name__ == "__main__":
    main()
