"""Baseline lifecycle figures (docs/BENCHMARKS.md): the daemon's pipeline on simulated time.

Runs `agent.pipeline.SensorPipeline` (windowing, features, ISO check, streaming model, alert
policy) over `drivers.simulator.Machine` samples fed as 1 s frames, with a sensor built from the
contract keys only (protocol sim, sample_rate 1000 Hz, default 4096-sample windows, no overlap:
one window per 4.1 s) and product defaults for everything else. Time is the machine's, so an
hour of learning takes seconds, and the figures are what the daemon does with the same data.

    python bench/baseline.py delay  [--seeds 3]            first alert after learning: learn 20/60/3600 s
    python bench/baseline.py far    [--seeds 3 --hours 3]  false alerts per hour, 10- and 100-window baselines
    python bench/baseline.py midfault [--seeds 3]          fault at 60 % of learning (120 s and 600 s)
    python bench/baseline.py changepoint [--seeds 10]      healthy learning runs: false regime changes
    python bench/baseline.py calibration [--seeds 3]       short baselines on i.i.d. vectors: exceedance
    --empirical: the same with the empirical 99.9 % quantile calibration, for comparison
    --no-regime-test: the same without the regime-change test, for comparison
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import numpy as np
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config_models import SensorConfig, parse_sensor  # noqa: E402
from agent.pipeline import SensorPipeline  # noqa: E402
from agent.records import Frame  # noqa: E402
from drivers.simulator import Machine  # noqa: E402

RATE = 1000.0
T0 = 1_800_000_000.0  # machine time 0 as a wall-clock epoch
CHANNELS = ("ax", "ay", "az", "temp")


def sensor(learn_seconds: float, **detector) -> SensorConfig:
    return parse_sensor(name="pump1", protocol="sim", sample_rate=RATE, channels=list(CHANNELS),
                        detector={"learn_seconds": learn_seconds, **detector})


def run(cfg: SensorConfig, seconds: float, *, seed: int, fault: str | None = None, fault_at: float = 0.0):
    """Feed `seconds` of machine time; returns (pipeline, alerts, baseline at end of learning);
    `pipeline.scores` holds every Score."""
    alerts, learned = [], []
    pipeline = SensorPipeline(device="bench", sensor_cfg=cfg, aggregate_interval=1e12, emit=alerts.append,
                              on_baseline=lambda _s, b: learned.append(b))
    pipeline.scores = []
    handle = pipeline.handle

    def recording(vector, exclude=None):
        score = handle(vector, exclude)
        pipeline.scores.append(score)
        return score

    pipeline.handle = recording
    machine = Machine(rate=RATE, seed=seed, fault=fault, fault_at=fault_at)
    block = int(RATE)
    for k in range(int(seconds)):
        pipeline.process(Frame("pump1", T0 + (k + 1), CHANNELS, machine.generate(block)))
    return pipeline, [a for a in alerts if hasattr(a, "level")], (learned[0] if learned else None)


def _learned_s(baseline) -> float | None:
    if baseline is None or baseline["learned_at"] is None:
        return None
    from datetime import datetime

    return datetime.fromisoformat(baseline["learned_at"].replace("Z", "+00:00")).timestamp() - T0


def first(alerts, kind: str = "anomaly", after: float = -math.inf):
    return next((a for a in alerts if a.kind == kind and a.level != "clear" and a.ts - T0 >= after), None)


def cmd_delay(args) -> None:
    print("| learn_seconds | windows learned | calibration | learning ended (s) | fault at (s) "
          "| first anomaly alert (s) | delay after fault, median (s) | delay after learning, median (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for learn in (20, 60, 3600):
        rows = []
        for seed in range(1, args.seeds + 1):
            fault_at = learn + 10.0
            pipe, alerts, b = run(sensor(learn), learn + 120, seed=seed, fault="outer-race", fault_at=fault_at)
            a = first(alerts)
            ended = _learned_s(b)
            rows.append((b["windows"], b["calibration"]["method"], ended, fault_at,
                         None if a is None else a.ts - T0))
        hit = [r for r in rows if r[4] is not None]
        d_fault = statistics.median(r[4] - r[3] for r in hit) if hit else None
        d_learn = statistics.median(r[4] - r[2] for r in hit) if hit else None
        r = rows[0]
        print(f"| {learn} | {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.0f} | "
              f"{', '.join('none' if x[4] is None else f'{x[4]:.1f}' for x in rows)} | "
              f"{'-' if d_fault is None else f'{d_fault:.1f}'} | {'-' if d_learn is None else f'{d_learn:.1f}'} |")


def cmd_far(args) -> None:
    print("| baseline | learn_seconds | calibration | seeds x hours scored | anomaly warnings+alarms | per hour "
          "| windows >= warning | score p99.9 / max | drift alerts | regime changes while learning |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cfg_warning = sensor(1).alerts.warning
    for windows, learn in ((10, 40.0), (100, 409.0)):
        raised = above = drift = changes = 0
        method, values = None, []
        for seed in range(1, args.seeds + 1):
            pipe, alerts, b = run(sensor(learn), learn + args.hours * 3600, seed=100 + seed)
            assert b["windows"] == windows, b
            method = b["calibration"]["method"]
            raised += sum(1 for a in alerts if a.kind == "anomaly" and a.level != "clear")
            drift += sum(1 for a in alerts if a.kind == "drift" and a.level != "clear")
            changes += "changed regime" in (b["reason"] or "")
            above += sum(1 for sc in pipe.scores if sc.ready and sc.value >= cfg_warning)
            values += [sc.value for sc in pipe.scores if sc.ready]
        hours = args.seeds * args.hours
        print(f"| {windows} windows | {learn:g} | {method} | {args.seeds} x {args.hours} h | {raised} | "
              f"{raised / hours:.2f} | {above} | {np.quantile(values, 0.999):.3f} / {max(values):.3f} | {drift} | "
              f"{changes} |")


def cmd_midfault(args) -> None:
    print(f"fault: {args.fault}\n")
    print("| learn_seconds | fault at (s) | baseline at end of learning | windows kept | first anomaly alert (s) "
          "| delay after fault, median (s) |")
    print("|---|---|---|---|---|---|")
    for learn in (120, 600):
        fault_at = 0.6 * learn
        rows = []
        for seed in range(1, args.seeds + 1):
            pipe, alerts, b = run(sensor(learn), learn + 300, seed=seed, fault=args.fault, fault_at=fault_at)
            a = first(alerts)
            rows.append((b, None if a is None else a.ts - T0))
        hit = [t for _, t in rows if t is not None]
        b = rows[0][0]
        state = b["state"] + (" (regime change)" if "changed regime" in (b["reason"] or "") else "")
        print(f"| {learn} | {fault_at:.0f} | {state} | {', '.join(str(r[0]['windows']) for r in rows)} | "
              f"{', '.join('none' if t is None else f'{t:.1f}' for _, t in rows)} | "
              f"{f'{statistics.median(hit) - fault_at:.1f}' if hit else 'never'} |")
    print()
    print("example reason:", rows[0][0]["reason"])


def cmd_changepoint(args) -> None:
    """Healthy learning runs: the regime-change statistic at its best split, against the thresholds."""
    from models import changepoint, streaming

    seen = []
    keep = streaming.StreamingModel._keep_healthy_part

    def probe(model, ts):
        seen.append(changepoint.regime_change(model._pool_ts, model._pool_probe, threshold=-math.inf,
                                              min_shift=-math.inf))
        keep(model, ts)

    streaming.StreamingModel._keep_healthy_part = probe
    print("| learn_seconds | healthy runs | flagged | largest t | largest step (nats, x) |")
    print("|---|---|---|---|---|")
    for learn in (60, 120, 600, 3600):
        seen.clear()
        flagged = 0
        for seed in range(1, args.seeds + 1):
            pipe, alerts, b = run(sensor(learn), learn + 10, seed=200 + seed)
            flagged += "changed regime" in (b["reason"] or "")
        t = max(c.statistic for c in seen if c)
        shift = max(c.shift for c in seen if c)
        print(f"| {learn} | {args.seeds} | {flagged} | {t:.1f} | {shift:.2f} (x{math.exp(shift):.1f}) |")
    print(f"\nthresholds: t >= {changepoint.THRESHOLD} and step >= {changepoint.MIN_SHIFT} nats "
          f"(x{math.exp(changepoint.MIN_SHIFT):.1f})")


def _iid_healthy(n: int, seed: int) -> list[dict[str, float]]:
    """Independent healthy feature vectors (tests/test_detectors.py's shape): no slow cycles, so
    the exceedance rate measures the calibration alone."""
    rng = np.random.default_rng(seed)
    load = rng.normal(0.0, 1.0, n)
    rms = 0.05 * np.exp(0.1 * load + 0.05 * rng.normal(size=n))
    return [{"ax.rms_g": float(r), "ax.kurtosis": float(3.0 + 0.2 * rng.normal()),
             "ax.skewness": float(0.05 * rng.normal()),
             "ax.band_10_100_g2": float(0.6 * r**2 * np.exp(0.05 * rng.normal())),
             "ax.velocity_rms_mm_s": float(40.0 * r * np.exp(0.05 * rng.normal())),
             "temp.mean_c": float(40.0 + 0.5 * x + 0.05 * rng.normal()),
             "temp.slope_c_per_min": float(0.02 * rng.normal())} for r, x in zip(rms, load)]


def cmd_calibration(args) -> None:
    """Short baselines on i.i.d. healthy vectors: how often a healthy window reaches the warning
    (0.5, meant to be 0.1 %), and the score of a fault (band energy x30, kurtosis x3)."""
    from models import registry
    from models.streaming import StreamingModel

    print("| windows | calibration | healthy windows >= 0.5 (target 0.1 %) | >= 0.9 | fault score, median |")
    print("|---|---|---|---|---|")
    for n in (5, 10, 30, 100):
        warn, alarm, faults, method = [], [], [], None
        for seed in range(args.seeds * 10):
            model = StreamingModel(registry.create("auto"), learn_seconds=n - 0.5)
            for i, x in enumerate(_iid_healthy(n, seed)):
                model.update(x, float(i))
            fresh = _iid_healthy(500, 10_000 + seed)
            scores = np.array([model.update(x, n + i)[0] for i, x in enumerate(fresh)])
            method = model.calibrator.method
            warn.append(np.mean(scores >= 0.5))
            alarm.append(np.mean(scores >= 0.9))
            f = {**fresh[0], "ax.band_10_100_g2": fresh[0]["ax.band_10_100_g2"] * 30,
                 "ax.kurtosis": fresh[0]["ax.kurtosis"] * 3}
            faults.append(model.update(f, 1e9)[0])
        print(f"| {n} | {method} | {100 * np.mean(warn):.2f} % | {100 * np.mean(alarm):.2f} % | "
              f"{np.median(faults):.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["delay", "far", "midfault", "changepoint", "calibration"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--fault", default="outer-race", help="midfault: the simulator's fault")
    p.add_argument("--empirical", action="store_true",
                   help="for comparison: calibrate every baseline on the empirical 99.9 %% quantile of its "
                        "sequential scores (no small-sample tail, no leave-one-out)")
    p.add_argument("--no-regime-test", action="store_true",
                   help="for comparison: learn everything, as before the regime-change test existed")
    args = p.parse_args()
    if args.no_regime_test:
        import models.streaming

        models.streaming.regime_change = lambda *a, **k: None
    if args.empirical:
        import models.calibration
        import models.streaming

        models.calibration.exponential_tail = lambda *a: None
        models.streaming.LOO_MAX = -1
    {"delay": cmd_delay, "far": cmd_far, "midfault": cmd_midfault, "changepoint": cmd_changepoint,
     "calibration": cmd_calibration}[args.what](args)


if __name__ == "__main__":
    main()
