"""Utility loss of differentially private aggregates (docs/BENCHMARKS.md, docs/privacy.md).

The daemon's pipeline (`agent.pipeline.SensorPipeline`, contract keys: protocol sim, 1000 Hz,
default 4096-sample windows: one window per 4.1 s) runs over `drivers.simulator.Machine` samples
on machine time, with the default aggregate interval (60 s: ~14.6 windows per aggregate). Every
interval's windows are recorded once; each is then released exactly and by `agent.privacy.Privatizer`
(OpenDP, Laplace, or Gaussian with delta 1e-6) at epsilon 0.1, 1 and 10, with the bounds in
`BOUNDS` (the example bounds of docs/privacy.md: physical ranges, not fitted to this data).

Reported per feature: the median over intervals and draws of |noisy - exact| / |exact|, for the mean
and for the max. Two publication sets: every feature of the sensor (29 features + score = 90
statistics share epsilon), and four (ax/ay/az.rms_g and temp.mean_c, via `aggregates.features`).

    python bench/privacy.py [--minutes 60] [--seeds 2] [--draws 5] [--mechanism laplace|gaussian] [--interval 60]
    python bench/privacy.py --import-rss [--path DIR ...]   RSS each DP library adds when imported
    python bench/privacy.py --release-cost                  time per release, RSS over 6000 releases
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config_models import parse_sensor  # noqa: E402
from agent.pipeline import SensorPipeline  # noqa: E402
from agent.privacy import PrivacyConfig, Privatizer  # noqa: E402
from agent.records import Frame  # noqa: E402
from drivers.simulator import Machine  # noqa: E402

RATE = 1000.0
T0 = 1_800_000_000.0
CHANNELS = ("ax", "ay", "az", "temp")
INTERVAL = 60.0  # the default aggregates.interval
EPSILONS = (0.1, 1.0, 10.0)
BOUNDS = {  # docs/privacy.md example: ranges a machine of this class can show (ISO 10816-3 zone D at 11.2 mm/s)
    "*.rms_g": (0, 0.5), "*.peak_g": (0, 2), "*.crest_factor": (1, 10), "*.kurtosis": (1, 20),
    "*.skewness": (-3, 3), "*.band_*_g2": (0, 0.05), "*.velocity_rms_mm_s": (0, 11.2),
    "*.envelope_rms_g": (0, 0.2), "temp.mean_c": (0, 120), "temp.slope_c_per_min": (-5, 5),
}
FEW = ("ax.rms_g", "ay.rms_g", "az.rms_g", "temp.mean_c")


class _Recorder:
    """Stands in for the Privatizer inside the aggregator: keeps each interval's rows."""

    def __init__(self):
        self.intervals: list[tuple[list[str], np.ndarray]] = []

    def release(self, sensor, names, data, keep):
        if data is not None and len(data):
            self.intervals.append((list(names), data.copy()))
        return {}, None


def record(minutes: int, seed: int, interval: float = INTERVAL) -> list[tuple[list[str], np.ndarray]]:
    cfg = parse_sensor(name="pump1", protocol="sim", sample_rate=RATE, channels=list(CHANNELS),
                       detector={"learn_seconds": 600})
    pipe = SensorPipeline(device="bench", sensor_cfg=cfg, aggregate_interval=interval, emit=lambda r: None)
    rec = _Recorder()
    pipe.aggregator.privacy = rec
    machine = Machine(rate=RATE, seed=seed)
    for k in range(int(minutes * 60)):
        pipe.process(Frame("pump1", T0 + k + 1, CHANNELS, machine.generate(int(RATE))))
    return rec.intervals[1:]  # the first interval is partial


def _exact(names, data, keep):
    out = {}
    for i, name in enumerate(names):
        if keep(name):
            col = data[:, i][np.isfinite(data[:, i])]
            out[name] = {"mean": float(col.mean()), "max": float(col.max())}
    return out


def utility(intervals, eps: float, mechanism: str, keep, draws: int) -> dict[str, tuple[float, float]]:
    cfg = PrivacyConfig(epsilon=eps, mechanism=mechanism, delta=1e-6 if mechanism == "gaussian" else None,
                        bounds=BOUNDS)
    priv = Privatizer(cfg)
    errs: dict[str, tuple[list, list]] = {}
    for names, data in intervals:
        exact = _exact(names, data, keep)
        for _ in range(draws):
            noisy, _block = priv.release("pump1", names, data, keep)
            for name, stats in noisy.items():
                e = errs.setdefault(name, ([], []))
                for j, stat in enumerate(("mean", "max")):
                    if exact[name][stat] != 0:  # relative error is undefined at 0 (the score while learning)
                        e[j].append(abs(stats[stat] - exact[name][stat]) / abs(exact[name][stat]))
    return {n: (statistics.median(m) if m else math.nan, statistics.median(x) if x else math.nan)
            for n, (m, x) in errs.items()}


_PROBE = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import numpy  # the daemon has it loaded already
before = rss()
if sys.argv[1] == "opendp":
    import opendp.prelude as dp
    dp.enable_features("contrib")
    m = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float), scale=1.0)
    m([0.0] * 6)
else:
    from diffprivlib.mechanisms import Laplace
    Laplace(epsilon=1.0, sensitivity=1.0).randomise(0.0)
print(f"{before:.1f} {rss():.1f}")
"""


def import_rss(paths: list[str]) -> None:
    """Median over 3 fresh interpreters of the RSS a library adds (import + one Laplace draw)."""
    import os
    import subprocess

    print("| library | RSS before (numpy loaded) MiB | after import + one draw MiB | added MiB |")
    print("|---|---|---|---|")
    for lib in ("opendp", "diffprivlib"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)} if paths else None
        runs = []
        for _ in range(3):
            r = subprocess.run([sys.executable, "-c", _PROBE, lib], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                print(f"| {lib} | does not import: {r.stderr.strip().splitlines()[-1][:120]} | | |")
                break
            runs.append(tuple(map(float, r.stdout.split())))
        if len(runs) == 3:
            b, a = statistics.median(x[0] for x in runs), statistics.median(x[1] for x in runs)
            print(f"| {lib} | {b:.1f} | {a:.1f} | {a - b:.1f} |")


def release_cost(n: int = 6000) -> None:
    """Time per release of one 60 s aggregate of every feature (90 statistics), and RSS over n releases."""
    import time

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))

    priv = Privatizer(PrivacyConfig(epsilon=1.0, bounds={"*": (0, 1)}))
    names = [f"f{i}" for i in range(29)] + ["score"]
    data = np.random.default_rng(0).uniform(0, 1, (15, 30))
    priv.release("s", names, data, lambda n: True)
    r0, t0 = rss(), time.perf_counter()
    for _ in range(n):
        priv.release("s", names, data, lambda n: True)
    print(f"{1000 * (time.perf_counter() - t0) / n:.1f} ms per release of 90 statistics; RSS {r0:.1f} -> {rss():.1f} MiB "
          f"over {n} releases")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--import-rss", action="store_true", help="measure the RSS each DP library adds at import")
    ap.add_argument("--release-cost", action="store_true", help="time and RSS of 6000 releases")
    ap.add_argument("--path", action="append", default=[], help="with --import-rss: where a library is installed "
                    "(pip install --target DIR ...)")
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--mechanism", choices=("laplace", "gaussian"), default="laplace")
    ap.add_argument("--interval", type=float, default=INTERVAL, help="aggregates.interval (default: the product's 60 s)")
    args = ap.parse_args(argv)
    if args.import_rss:
        import_rss(args.path)
        return 0
    if args.release_cost:
        release_cost()
        return 0
    intervals = [iv for seed in range(1, args.seeds + 1) for iv in record(args.minutes, seed, args.interval)]
    if not intervals:
        ap.error(f"--minutes {args.minutes}: no complete interval of {args.interval:g} s after the first")
    counts = [len(d) for _n, d in intervals]
    print(f"{len(intervals)} intervals of {args.interval:g} s, windows per interval median {statistics.median(counts)}; "
          f"mechanism {args.mechanism}; {args.draws} draws per interval")
    sets = {"all features": lambda n: any(fnmatchcase(n, p) for p in BOUNDS) or n == "score",
            "4 features": lambda n: n in FEW or n == "score"}
    for label, keep in sets.items():
        results = {eps: utility(intervals, eps, args.mechanism, keep, args.draws) for eps in EPSILONS}
        names = list(results[EPSILONS[0]])
        stats_n = 3 * len(names)
        print(f"\n### {label} ({len(names)} incl. score, {stats_n} statistics share epsilon)\n")
        print("| feature | " + " | ".join(f"mean err eps={e:g} | max err eps={e:g}" for e in EPSILONS) + " |")
        print("|---|" + "---|" * (2 * len(EPSILONS)))
        for name in names:
            cells = " | ".join(f"{100 * results[e][name][0]:.1f} % | {100 * results[e][name][1]:.1f} %" for e in EPSILONS)
            print(f"| {name} | {cells} |")
        med = " | ".join(f"{100 * statistics.median(v[0] for v in results[e].values()):.1f} % | "
                         f"{100 * statistics.median(v[1] for v in results[e].values()):.1f} %" for e in EPSILONS)
        print(f"| **median over features** | {med} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
