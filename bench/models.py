"""Bundle detectors on this machine: per variant file size, single-window latency, RSS added,
start-up time and detection quality. Writes the Markdown tables for docs/models.md.

    .venv/bin/python bench/models.py [--seconds 300]

Training data: 300 s of the simulated healthy machine (3200 Hz, 4096-sample windows, hop 2048,
as the shipped config.yaml); quality: AUC of held-back healthy windows against 60 s of the same
machine with an outer-race fault (a real fault signature, not synthetic). RSS added and start-up
are measured in a fresh process that has imported the daemon (agent.service): RSS after loading
the model and scoring one window minus RSS before; start-up = import of onnxruntime, session
build and first score.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.features import FeatureSpec  # noqa: E402
from models.training import data, export  # noqa: E402
from models.training.train import train  # noqa: E402

PROBE = r"""
import json, sys, time
import agent.service
from agent.health import rss_mib
import numpy as np
before = rss_mib(); t0 = time.perf_counter()
kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [f"f{i}" for i in range(n)]
if kind == "onnx":
    from models.onnx_runtime import OnnxDetector
    det = OnnxDetector(open(path, "rb").read(), names, [0.0] * n, [1.0] * n)
    det.score(dict.fromkeys(names, 0.1))
else:
    from models.registry import create
    det = create(kind)
    for i in range(40):
        det.learn({k: 0.1 + 0.01 * ((i * 7 + j) % 5) for j, k in enumerate(names)})
    det.score(dict.fromkeys(names, 0.1))
print(json.dumps({"rss_added_mib": rss_mib() - before, "startup_ms": (time.perf_counter() - t0) * 1e3}))
"""


def probe(kind: str, path: str, n: int) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", PROBE, kind, path, str(n)], cwd=root, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=300.0)
    args = ap.parse_args()
    spec = FeatureSpec.for_channels(3200.0, ("ax", "ay", "az", "temp"))
    healthy = data.load(f"sim:{args.seconds:g}", spec=spec, window=4096, hop=2048)
    faulty = data.load("sim:60:outer-race:0", spec=spec, window=4096, hop=2048)
    n = len(healthy.names)
    print(f"{len(healthy.x)} healthy windows, {len(faulty.x)} faulty, {n} features\n")
    base = probe("gaussian", "", n)
    print(f"streaming gaussian (no bundle): RSS added {base['rss_added_mib']:.1f} MiB, "
          f"start-up {base['startup_ms']:.0f} ms\n")
    with tempfile.TemporaryDirectory() as tmp:
        for detector in ("pca", "iforest", "autoencoder"):
            t0 = time.perf_counter()
            result = train(healthy, detector, faulty=faulty, repeat=1000)
            took = time.perf_counter() - t0
            print(f"### {detector} (train + compress + measure: {took:.1f} s; chosen: {result.chosen})\n")
            print("| variant | file size | latency / window | RSS added | start-up | AUC (held-back vs outer-race) "
                  "| rank r vs fp32 | gate |")
            print("|---|---:|---:|---:|---:|---:|---:|---|")
            for m in result.measured:
                path = os.path.join(tmp, f"{detector}-{m.variant}.onnx")
                with open(path, "wb") as f:
                    f.write(result.models[m.variant])
                p = probe("onnx", path, n)
                mark = " (chosen)" if m.variant == result.chosen else ""
                print(f"| {m.variant}{mark} | {m.size_bytes / 1024:.1f} kB | {m.latency_us:.1f} us | "
                      f"{p['rss_added_mib']:.1f} MiB | {p['startup_ms']:.0f} ms | {m.auc:.3f} | {m.rank_corr:.3f} | "
                      f"{'accepted' if m.accepted else 'rejected: ' + m.reason} |")
            for v, why in result.skipped.items():
                print(f"| {v} | - | - | - | - | - | - | {why} |")
            if detector == "iforest":
                slow = export.skl2onnx_isolation_forest(result.fitted["fp32"].estimator, n)
                from models.onnx_runtime import session

                s = session(slow)
                row = {"x": result.holdout_z[:1].astype(np.float32)}
                for _ in range(20):
                    s.run(None, row)
                t = []
                for _ in range(200):
                    t0 = time.perf_counter_ns()
                    s.run(None, row)
                    t.append(time.perf_counter_ns() - t0)
                print(f"\nskl2onnx's own IsolationForest graph for the same forest: {len(slow) / 1024:.1f} kB, "
                      f"{np.median(t) / 1e3:.1f} us per window (session.run alone)")
            print()


if __name__ == "__main__":
    main()
