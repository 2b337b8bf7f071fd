"""Federated baselines (docs/BENCHMARKS.md): a new machine with and without a fleet prior.

Simulated machines of one type (`drivers/simulator.py`): every one its own seed (amplitudes,
phases, resonance, noise) and a shaft speed drawn within +-5 % of 1780 rpm. `--donors` machines
learn their baselines as the daemon does (`agent.pipeline.SensorPipeline`, contract keys only:
protocol sim, 1000 Hz, default 4096-sample windows, `learn_seconds` as given, product defaults for
the rest); their shares (agent/fleet_share.py `share_payload`, exactly what `fleet.share_baseline`
publishes) are merged (`merge`, as `pdm-agent fleet merge` does) into one prior. Then each of
`--machines` new machines (seeds and speeds not among the donors') runs twice from its start:
learning its own baseline, and starting from the prior (models/prior.py, as `fleet.prior` does),
in two runs each:

- a fault (outer race, inner race, imbalance in turn) at `--early` s, while its own baseline
  would still be learning;
- healthy for `--healthy` s, then the same fault.

With `--epsilon E ...` the donors share privately (`fleet.privacy`, agent/fleet_privacy.py): their
detectors sum windows clipped to bounds taken from a reference machine that does not share (seed
`--reference`, mean -/+ `--bounds-k` standard deviations of its own one-hour baseline, as
`pdm-agent fleet bounds` computes them), and each share is noised with epsilon E (delta 1e-6, the
`--covariance` given) before the merge. One row per epsilon and noise draw (`--draws`: the noise is
drawn from the operating system's secure source, so every run differs), beside the exact prior's.

Reported: time to a usable baseline (first window scored for alerts), false anomaly alerts
(warnings and alarms while healthy) per hour scored, faults detected within `--within` s and the
median delay. Time is the machine's, so hours take seconds.

    python bench/federated.py [--donors 5 --machines 5 --first-seed 1000 --learn 3600 --early 600 --healthy 7200]
                              [--epsilon 1 10 --covariance diagonal --reference 900 --bounds-k 6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.baseline import planned_windows  # noqa: E402
from agent.config_models import SensorConfig, parse_sensor  # noqa: E402
from agent.fleet_share import merge, share_payload  # noqa: E402
from agent.pipeline import SensorPipeline  # noqa: E402
from agent.records import Frame  # noqa: E402
from drivers.simulator import Machine  # noqa: E402
from models.prior import prior_model  # noqa: E402

RATE = 1000.0
T0 = 1_800_000_000.0
CHANNELS = ("ax", "ay", "az", "temp")
FAULTS = ("outer-race", "inner-race", "imbalance")


def sensor(learn_seconds: float) -> SensorConfig:
    return parse_sensor(name="pump1", protocol="sim", sample_rate=RATE, channels=list(CHANNELS),
                        detector={"learn_seconds": learn_seconds})


def rpm_of(seed: int) -> float:
    return 1780.0 * (1.0 + np.random.default_rng(10_000 + seed).uniform(-0.05, 0.05))


def run(cfg, seconds: float, seed: int, *, model=None, fault=None, fault_at: float = 0.0):
    """Feed `seconds` of one machine through the daemon's pipeline; (pipeline, anomaly alerts, scores)."""
    alerts, scores = [], []
    pipe = SensorPipeline(device="bench", sensor_cfg=cfg, aggregate_interval=1e12, emit=alerts.append, model=model)
    handle = pipe.handle

    def recording(vector, exclude=None):
        s = handle(vector, exclude)
        scores.append(s)
        return s

    pipe.handle = recording
    machine = Machine(rate=RATE, rpm=rpm_of(seed), seed=seed, fault=fault, fault_at=fault_at)
    for k in range(int(seconds)):
        pipe.process(Frame("pump1", T0 + k + 1, CHANNELS, machine.generate(int(RATE))))
    raised = [a for a in alerts if getattr(a, "kind", None) == "anomaly" and a.level != "clear"]
    return pipe, raised, scores


def reference_bounds(args) -> dict:
    """`fleet.privacy.bounds` from a machine that does not share (module docstring)."""
    from models.pooling import learned_baseline, stats_of
    from models.private_stats import bounds_from
    from models.gaussian import is_log_feature, variance_floor

    pipe, _, _ = run(sensor(args.learn), args.learn + 10, args.reference)
    st = stats_of(learned_baseline(pipe.model.state())[0])
    log_mask = np.array([is_log_feature(k) for k in st.keys])
    return bounds_from(st.keys, st.mean, st.cov, log_mask, args.bounds_k, variance_floor(st.mean, log_mask))


def fleet_priors(args) -> list[tuple[str, dict]]:
    """(row name, prior) for the exact shares and, per --epsilon, the private ones (same donors)."""
    from agent.config_fleet import SharePrivacy
    from agent.pipeline import build_model

    cfg = sensor(args.learn)
    clip = reference_bounds(args) if args.epsilon else None
    states = []
    for seed in range(args.first_donor, args.first_donor + args.donors):
        model = build_model(cfg.detector, cfg.alerts, clip) if clip else None
        pipe, _, _ = run(cfg, args.learn + 10, seed, model=model)
        states.append((seed, pipe.model.state()))
    out = []
    runs = [(None, 0)] + [(eps, k) for eps in args.epsilon for k in range(args.draws)]
    for eps, draw in runs:
        privacy = None if eps is None else SharePrivacy(epsilon=eps, bounds=clip, covariance=args.covariance)
        shares = [(f"donor {seed}", share_payload(
            state, device=f"donor-{seed}", sensor="pump1", machine_type="bench-pump",
            window_s=planned_windows(cfg)[1], agent_version="bench", learned_at=None, privacy=privacy))
            for seed, state in states]
        doc = merge(shares, "bench-pump")
        if args.in_sample and eps is None:
            doc["calibration"] = in_sample_calibration(shares, doc)
        out.append(("fleet prior" if eps is None else
                    f"private prior, epsilon {eps:g} ({args.covariance}), draw {draw + 1}", doc))
    return out


def in_sample_calibration(shares, doc) -> dict:
    """For comparison: each donor's calibration rescaled by how the pool of *all* donors (itself
    included) scores it, instead of the pool of the others (models/pooling.py pool_calibration)."""
    from models.pooling import expected_score, stats_of

    full = stats_of(doc["detector"])
    medians, tails, weights = [], [], []
    for _, share in shares:
        own = stats_of(share["detector"])
        scale = sum(expected_score(full, own)) / sum(expected_score(own, own))
        medians.append(scale * share["calibration"]["median"])
        tails.append(scale * share["calibration"]["tail"])
        weights.append(own.n)
    return {**doc["calibration"], "median": float(np.average(medians, weights=weights)), "tail": max(tails)}


def new_model(doc, cfg, prior_windows=None):
    if doc is None:
        return None
    d = cfg.detector
    return prior_model(doc, learn_seconds=d.learn_seconds, adapt_half_life_s=d.adapt_half_life_s,
                       cadence_s=planned_windows(cfg)[1], prior_windows=prior_windows, drift_large_at=cfg.alerts.alarm,
                       drift_clear_below=cfg.alerts.warning)


def evaluate(doc, args) -> dict:
    cfg = sensor(args.learn)
    usable, false, hours, early, late = [], 0, 0.0, [], []
    for i in range(args.machines):
        seed = args.first_seed + i
        fault = FAULTS[i % len(FAULTS)]
        for fault_at, found in ((args.early, early), (args.healthy, late)):
            _, raised, scores = run(cfg, fault_at + args.within, seed, model=new_model(doc, cfg, args.prior_windows), fault=fault,
                                    fault_at=fault_at)
            first_ready = next((s.ts - T0 for s in scores if s.ready), None)
            if fault_at == args.healthy:
                usable.append(first_ready)
                healthy = [s for s in scores if s.ready and s.ts - T0 < fault_at]
                hours += len(healthy) * planned_windows(cfg)[1] / 3600.0
                false += sum(1 for a in raised if a.ts - T0 < fault_at)
                if args.verbose:
                    print(f"  seed {seed} rpm {rpm_of(seed):.0f}: false alerts at "
                          f"{[round(a.ts - T0) for a in raised if a.ts - T0 < fault_at]}", file=sys.stderr)
            hit = next((a.ts - T0 - fault_at for a in raised if a.ts - T0 >= fault_at), None)
            found.append(hit)
    return {"usable": statistics.median(usable), "false": false, "hours": hours, "early": early, "late": late}


def _found(delays) -> str:
    hit = [d for d in delays if d is not None]
    median = f"{statistics.median(hit):.0f} s" if hit else "-"
    return f"{len(hit)}/{len(delays)} (median {median})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--donors", type=int, default=5)
    p.add_argument("--machines", type=int, default=5)
    p.add_argument("--learn", type=float, default=3600.0, help="learn_seconds of donors and new machines")
    p.add_argument("--early", type=float, default=600.0, help="fault time (s) of the first run")
    p.add_argument("--healthy", type=float, default=7200.0, help="fault time (s) of the second run")
    p.add_argument("--within", type=float, default=300.0, help="a fault alerted later than this is missed")
    p.add_argument("--first-donor", type=int, default=1, help="seed of the first donor")
    p.add_argument("--first-seed", type=int, default=1000, help="seed of the first new machine (donors: 1..N)")
    p.add_argument("--prior-windows", type=int, default=None, help="fleet.prior_windows (default: pooled count)")
    p.add_argument("--in-sample", action="store_true",
                   help="for comparison: calibrate the prior on the donors as the pool of all of them scores them")
    p.add_argument("--verbose", action="store_true", help="false alert times per machine, on stderr")
    p.add_argument("--epsilon", type=float, nargs="*", default=[], help="also private shares with these epsilons")
    p.add_argument("--draws", type=int, default=3, help="noise draws (one prior each) per epsilon")
    p.add_argument("--covariance", choices=("diagonal", "full"), default="full", help="fleet.privacy.covariance")
    p.add_argument("--reference", type=int, default=900, help="seed of the machine whose baseline gives the bounds")
    p.add_argument("--bounds-k", type=float, default=6.0, help="bounds: its mean -/+ this many standard deviations")
    args = p.parse_args()
    priors = fleet_priors(args)
    doc = priors[0][1]
    print(f"prior: {doc['detector']['n']} windows of {args.donors} donors, rpm "
          f"{', '.join(f'{rpm_of(s):.0f}' for s in range(args.first_donor, args.first_donor + args.donors))}; new machines rpm "
          f"{', '.join(f'{rpm_of(args.first_seed + i):.0f}' for i in range(args.machines))}\n")
    print(f"| start | time to a usable baseline (median) | false anomaly alerts / hours scored healthy | "
          f"fault at {args.early:.0f} s: detected within {args.within:.0f} s | "
          f"fault at {args.healthy:.0f} s: detected within {args.within:.0f} s |")
    print("|---|---|---|---|---|")
    for name, prior in [("own baseline (learn_seconds)", None), *priors]:
        r = evaluate(prior, args)
        print(f"| {name} | {r['usable']:.1f} s | {r['false']} / {r['hours']:.1f} h | {_found(r['early'])} | "
              f"{_found(r['late'])} |")


if __name__ == "__main__":
    main()
