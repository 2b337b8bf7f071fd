"""CWRU bearing faults: trained on the normal baseline only, AUC per fault type and load.

    cd /work/main && .venv/bin/python bench/cwru.py            # ~20 s

Data preparation is bench/detectors.py's `cwru_data` (shared code): drive-end and fan-end channels,
Normal_0 (48 kHz) decimated by 4 to 12 kHz like the fault files, 1024-sample windows, hop 256,
agent/features.extract_batch. The first 70 % of Normal_0 is the baseline, the last 30 % the healthy
hold-out. The detector is the daemon's default (registry "auto") in a StreamingModel; each row is
the ROC AUC of "fault file windows score above held-out normal windows" and the fraction of the fault
file's windows at or above the warning threshold (0.5).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from detectors import auc, cwru_data, to_dicts, train  # noqa: E402


def main() -> None:
    data = cwru_data()
    model = train("auto", data)
    names = data["names"]

    def scores(rows):
        return np.array([model.update(x, 1e12)[0] for x in to_dicts(rows, names)])

    healthy = scores(data["healthy"])
    print(f"healthy hold-out: {len(healthy)} windows, {100 * np.mean(healthy >= 0.5):.1f} % >= 0.5")
    print("| fault | 0 hp AUC | 3 hp AUC | 0 hp det@0.5 | 3 hp det@0.5 |")
    print("|---|---|---|---|---|")
    faults = data["faults"]
    for kind in sorted({k.rsplit("_", 1)[0] for k in faults}):
        row = []
        for load in ("0", "3"):
            s = scores(faults[f"{kind}_{load}"])
            row.append((auc(healthy, s), float(np.mean(s >= 0.5))))
        print(f"| {kind} | {row[0][0]:.3f} | {row[1][0]:.3f} | {row[0][1]:.2f} | {row[1][1]:.2f} |")


if __name__ == "__main__":
    main()
