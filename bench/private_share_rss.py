"""Memory of a private fleet share (docs/BENCHMARKS.md): the process's resident set before and after
the agent makes one (`fleet.privacy`: OpenDP imported, the Gaussian measurement built and run).

A gaussian detector with clipping bounds learns 300 windows of 29 features (the default 4-channel
sensor's count) in a StreamingModel; `share_payload` then releases it as `FleetShare` does.

    python bench/private_share_rss.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ONE_RUN = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from agent.config_fleet import SharePrivacy
from agent.fleet_share import share_payload
from models import registry
from models.streaming import StreamingModel


def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


keys = [f"ax.f{{i}}" for i in range(29)]
det = registry.create("gaussian", agent_params={{"clip": {{k: [-5.0, 5.0] for k in keys}}}})
model = StreamingModel(det, learn_seconds=100.0)
rng = np.random.default_rng(0)
for t in range(300):
    model.update(dict(zip(keys, rng.normal(0.0, 1.0, 29).tolist())), ts=float(t))
before = rss_mib()
share_payload(model.state(), device="d", sensor="s", machine_type="t", window_s=1.0, agent_version="bench",
              learned_at=None, privacy=SharePrivacy(epsilon=3, bounds={{"*": [-5.0, 5.0]}}))
print(before, rss_mib())
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    rows = []
    for _ in range(args.runs):  # a fresh process each time: imports are what is measured
        out = subprocess.run([sys.executable, "-c", ONE_RUN.format(root=str(ROOT))], capture_output=True, text=True,
                             check=True)
        rows.append(tuple(map(float, out.stdout.split())))
    before = statistics.median(r[0] for r in rows)
    after = statistics.median(r[1] for r in rows)
    print(f"RSS before the first private share {before:.1f} MiB, after {after:.1f} MiB: +{after - before:.1f} MiB "
          f"(median of {args.runs} processes)")


if __name__ == "__main__":
    main()
