"""Which detector should be the default? Measure every candidate on the same data.

    cd /work/main && .venv/bin/python bench/detectors.py            # ~2 min on one core
    .venv/bin/python bench/detectors.py --train-min 10 --test-min 5 gaussian zmax gaussian:shrinkage=0.3

For each detector (a registry name, optionally with `:param=value,...`):

- Simulator (drivers/simulator.py, 3200 Hz, 4096-sample tumbling windows, features of
  models/features.py): a StreamingModel learns `--train-min` minutes of a healthy machine; the frozen
  model then scores the next `--test-min` minutes of the healthy machine and of the same machine
  (same seed) with each fault seeded at the end of training (windows of the 5 s severity ramp skipped).
  Same seed means same noise, so `healthy + severity * (faulty - healthy)` is the machine with the
  fault's signal scaled down: `--severity 0.2` (default) is an incipient fault, 1.0 the simulator's full one.
  Reported: ROC AUC healthy vs each fault; `det@0.5`, the fraction of faulty windows at or above the
  warning threshold.
- CWRU (/work/shared/datasets/cwru): drive-end and fan-end accelerometers. Normal_0 was recorded at
  48 kHz and is decimated by 4 to 12 kHz (scipy.signal.decimate, order-8 Chebyshev anti-alias filter,
  zero phase) to match the 12 kHz fault files; 1024-sample windows, hop 256. The first 70 % of Normal_0
  is the baseline, the last 30 % the healthy hold-out; every 12k_DE file is faulty. Normal data exist at
  0 hp only, so the 3 hp fault files also differ by load (their AUC is an upper bound).
- False warnings: calibrated scores of held-out healthy windows >= 0.5 (fraction of windows), and
  warning events per hour after the alert policy's 3-of-5 debounce (agent/policy.py).
- Cost: microseconds per score+learn of one feature vector (and per StreamingModel.update), and
  the RSS that importing and training the detector adds, measured in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
from scipy.io import loadmat
from scipy.signal import decimate
from scipy.stats import rankdata

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.features import FeatureSpec, extract_batch, feature_names  # noqa: E402
from agent.policy import AlertPolicy, PolicyConfig  # noqa: E402
from agent.records import Score  # noqa: E402
from drivers.simulator import FAULTS, FAULT_RAMP_S, Machine  # noqa: E402
from models import registry  # noqa: E402
from models.streaming import StreamingModel  # noqa: E402

CWRU = pathlib.Path("/work/shared/datasets/cwru")
SIM_RATE, SIM_WINDOW = 3200.0, 4096
CWRU_RATE, CWRU_WINDOW, CWRU_HOP = 12000.0, 1024, 256


def parse_candidate(text: str) -> tuple[str, dict]:
    """"gaussian:shrinkage=0.3,half_life=100" -> ("gaussian", {"shrinkage": 0.3, ...})."""
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    return name, params


def auc(healthy: np.ndarray, faulty: np.ndarray) -> float:
    """ROC AUC of 'faulty scores higher' (Mann-Whitney U, ties count half)."""
    ranks = rankdata(np.concatenate([healthy, faulty]))
    n0, n1 = len(healthy), len(faulty)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def windows_of(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    starts = np.arange(0, len(x) - size + 1, hop)
    return np.stack([x[s : s + size] for s in starts])


def to_dicts(rows: np.ndarray, names: list[str]) -> list[dict[str, float]]:
    return [dict(zip(names, r.tolist())) for r in rows]


# -- data -----------------------------------------------------------------------------------------


def sim_data(train_s: float, test_s: float, seed: int, severity: float) -> dict:
    spec = FeatureSpec.for_channels(SIM_RATE, ("ax", "ay", "az", "temp"))
    names = feature_names(spec)
    n_train = int(train_s * SIM_RATE) // SIM_WINDOW * SIM_WINDOW
    n_total = n_train + int(test_s * SIM_RATE) // SIM_WINDOW * SIM_WINDOW

    def features(x: np.ndarray) -> np.ndarray:
        return extract_batch(x.reshape(-1, SIM_WINDOW, x.shape[1]), spec)

    def faulty(fault: str) -> np.ndarray:
        # Same seed = same noise: the difference is the fault's own signal, scaled to `severity`.
        x = Machine(rate=SIM_RATE, seed=seed, fault=fault, fault_at=n_train / SIM_RATE).generate(n_total)
        return features(healthy_x + severity * (x - healthy_x))

    healthy_x = Machine(rate=SIM_RATE, seed=seed).generate(n_total)
    healthy = features(healthy_x)
    k = n_train // SIM_WINDOW
    skip = int(np.ceil(FAULT_RAMP_S * SIM_RATE / SIM_WINDOW))
    return {
        "names": names,
        "step_s": SIM_WINDOW / SIM_RATE,
        "train": healthy[:k],
        "healthy": healthy[k:],
        "faults": {f: faulty(f)[k + skip :] for f in FAULTS},
    }


def cwru_data() -> dict:
    spec = FeatureSpec(CWRU_RATE, ("de", "fe"))
    names = feature_names(spec)

    def load(path: pathlib.Path, factor: int = 1) -> np.ndarray:
        mat = loadmat(path)
        num = next(k for k in mat if k.endswith("_DE_time"))[:4]  # "X097": the variable matching the file
        x = np.column_stack([mat[f"{num}_DE_time"][:, 0], mat[f"{num}_FE_time"][:, 0]])
        if factor > 1:
            x = decimate(x, factor, axis=0, zero_phase=True)
        return extract_batch(windows_of(x, CWRU_WINDOW, CWRU_HOP), spec)

    normal = load(CWRU / "normal" / "Normal_0.mat", factor=4)
    k = int(0.7 * len(normal))
    faults = {p.stem: load(p) for p in sorted((CWRU / "12k_DE").glob("*.mat"))}
    return {"names": names, "step_s": CWRU_HOP / CWRU_RATE, "train": normal[:k], "healthy": normal[k:], "faults": faults}


# -- measurement ----------------------------------------------------------------------------------


def train(candidate: str, data: dict) -> StreamingModel:
    name, params = parse_candidate(candidate)
    step = data["step_s"]
    learn_s = len(data["train"]) * step
    model = StreamingModel(registry.create(name, **params), learn_seconds=learn_s - step / 2)
    for i, x in enumerate(to_dicts(data["train"], data["names"])):
        model.update(x, ts=i * step)
    return model


def evaluate(candidate: str, data: dict) -> dict:
    model = train(candidate, data)
    det, cal = model.detector, model.calibrator
    names = data["names"]

    def raw(rows: np.ndarray) -> np.ndarray:
        return np.array([det.score(x) for x in to_dicts(rows, names)])

    healthy = raw(data["healthy"])
    faults = {f: raw(rows) for f, rows in data["faults"].items()}
    cal_h = cal(healthy)
    policy = AlertPolicy(PolicyConfig(), device="bench", sensor="s")
    events = [policy.update(Score("s", i * data["step_s"], v, True, "m")) for i, v in enumerate(cal_h)]
    warnings = sum(1 for e in events if e is not None and e.level != "clear")
    hours = len(healthy) * data["step_s"] / 3600.0

    # Cost, on a copy so the measured model stays frozen.
    copy = registry.from_state(json.loads(json.dumps(det.state())))
    xs = to_dicts(data["healthy"], names)
    t = time.perf_counter()
    for x in xs:
        copy.score(x)
        copy.learn(x)
    us = (time.perf_counter() - t) / len(xs) * 1e6
    stream = StreamingModel.from_state(json.loads(json.dumps(model.state())))
    stream.adapt_half_life_s = 86400.0
    t = time.perf_counter()
    for i, x in enumerate(xs):
        stream.update(x, ts=1e6 + i)
    us_update = (time.perf_counter() - t) / len(xs) * 1e6

    return {
        "auc": {f: auc(healthy, s) for f, s in faults.items()},
        "detect": {f: float(np.mean(cal(s) >= 0.5)) for f, s in faults.items()},
        "false_warn_frac": float(np.mean(cal_h >= 0.5)),
        "false_alarm_frac": float(np.mean(cal_h >= 0.9)),
        "warn_events_per_h": warnings / hours,
        "us": us,
        "us_update": us_update,
    }


def soak_features(learn_s: float, soak_s: float, seed: int) -> dict:
    """A different healthy machine for learn_s + soak_s seconds, generated in 10-minute blocks."""
    spec = FeatureSpec.for_channels(SIM_RATE, ("ax", "ay", "az", "temp"))
    machine = Machine(rate=SIM_RATE, seed=seed)
    total = int((learn_s + soak_s) * SIM_RATE) // SIM_WINDOW
    block = int(600 * SIM_RATE) // SIM_WINDOW
    rows = []
    for start in range(0, total, block):
        k = min(block, total - start)
        rows.append(extract_batch(machine.generate(k * SIM_WINDOW).reshape(k, SIM_WINDOW, 4), spec))
    return {"names": feature_names(spec), "step_s": SIM_WINDOW / SIM_RATE, "rows": np.concatenate(rows)}


def soak(candidate: str, data: dict, learn_s: float) -> dict:
    """The daemon's defaults end to end on healthy data: learn, then score with slow adaptation
    (half-life 1 day) through the alert policy; every warning here is a false one."""
    name, params = parse_candidate(candidate)
    model = StreamingModel(registry.create(name, **params), learn_seconds=learn_s, adapt_half_life_s=86400.0)
    policy = AlertPolicy(PolicyConfig(), device="bench", sensor="s")
    step, values, events = data["step_s"], [], 0
    for i, x in enumerate(to_dicts(data["rows"], data["names"])):
        value, ready, _ = model.update(x, ts=i * step)
        event = policy.update(Score("s", i * step, value, ready, "m"))
        if ready:
            values.append(value)
            events += event is not None and event.level != "clear"
    hours = len(values) * step / 3600.0
    return {"warn_frac": float(np.mean(np.array(values) >= 0.5)), "events_per_h": events / hours}


_RSS_PROBE = """
import sys, numpy as np
sys.path.insert(0, {root!r})
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
from models import registry
before = rss()
name, params = {name!r}, {params!r}
det = registry.create(name, **params)
rng = np.random.default_rng(0)
for row in rng.lognormal(0.0, 0.2, size=(1000, 35)):
    x = {{f"f{{i}}.rms_g": float(v) for i, v in enumerate(row)}}
    det.score(x); det.learn(x)
print(rss() - before)
"""


def rss_mib(candidate: str) -> float:
    """RSS added by building and training the detector on 1000 35-feature vectors (numpy and the
    registry already imported; river, when the detector needs it, is imported in this step)."""
    name, params = parse_candidate(candidate)
    code = _RSS_PROBE.format(root=str(ROOT), name=name, params=params)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidates", nargs="*", default=sorted(registry.DETECTORS))
    ap.add_argument("--train-min", type=float, default=30.0, help="simulated healthy baseline, minutes")
    ap.add_argument("--test-min", type=float, default=10.0, help="simulated test span per condition, minutes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--soak-min", type=float, default=120.0, help="healthy soak after a 60 min baseline; 0 = skip")
    ap.add_argument("--severity", type=float, default=0.2, help="fraction of the simulated fault signal")
    args = ap.parse_args()

    t = time.perf_counter()
    sim = sim_data(args.train_min * 60, args.test_min * 60, args.seed, args.severity)
    cwru = cwru_data()
    print(f"data ready in {time.perf_counter() - t:.1f} s: sim train {len(sim['train'])}, "
          f"healthy {len(sim['healthy'])}, per fault {len(sim['faults']['imbalance'])} windows; "
          f"CWRU train {len(cwru['train'])}, healthy {len(cwru['healthy'])} windows", file=sys.stderr)

    groups = {"IR": "IR", "B": "B0", "OR": "OR"}
    header = (["detector"] + [f"sim {f}" for f in FAULTS] + [f"CWRU {g}" for g in groups]
              + ["CWRU min", "sim warn %", "sim warn/h", "CWRU warn %", "sim det@0.5", "us/vec", "us/update", "RSS MiB"])
    soak_data = soak_features(3600.0, args.soak_min * 60, args.seed + 1) if args.soak_min > 0 else None
    if soak_data is not None:
        header[header.index("sim det@0.5") : header.index("sim det@0.5")] = ["soak warn %", "soak warn/h"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cand in args.candidates:
        s, c = evaluate(cand, sim), evaluate(cand, cwru)
        cw = [np.mean([a for f, a in c["auc"].items() if f.startswith(p)]) for p in groups.values()]
        row = ([cand] + [f"{s['auc'][f]:.3f}" for f in FAULTS] + [f"{v:.3f}" for v in cw]
               + [f"{min(c['auc'].values()):.3f}",
                  f"{100 * s['false_warn_frac']:.2f}", f"{s['warn_events_per_h']:.2f}",
                  f"{100 * c['false_warn_frac']:.1f}",
                  *([f"{100 * k['warn_frac']:.2f}", f"{k['events_per_h']:.2f}"]
                    if (k := soak(cand, soak_data, 3600.0) if soak_data is not None else None) else []),
                  "/".join(f"{s['detect'][f]:.2f}" for f in FAULTS),
                  f"{s['us']:.0f}", f"{s['us_update']:.0f}", f"{rss_mib(cand):.0f}"])
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
