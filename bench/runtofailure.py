"""A synthetic run-to-failure test in the layout of the IMS bearing data: a directory of bursts.

    .venv/bin/python bench/runtofailure.py OUT_DIR [--days 7 --onset-days 3.5 --seed 0 ...]

Why synthetic: no run-to-failure recording is in the development data, and the CWRU files are
short steady-state captures of seeded faults, so they cannot show whether a detector stays quiet for
days of healthy running and then alarms early on a defect that grows. The generator reproduces what
matters for that question, after the IMS test rig (Qiu et al. 2006, J. Sound Vib. 289; NASA
prognostics repository "Bearing Data Set"): four Rexnord ZA-2115 double-row bearings on a shaft at
2000 rpm, one accelerometer each, a 1-second capture of 20,480 samples at 20 kHz every 10 minutes,
file names `2004.02.12.10.32.39`, one whitespace-separated column per bearing, values in g with 3
decimals (as written by the rig's logger).

Signal per channel and burst (all in g):

- broadband background: white noise shaped by two structural resonances (about 3 kHz and 6.5 kHz,
  Q ~ 8, their frequencies moving -1 % per 10 C of temperature) plus a floor; RMS ~ 0.07 g scaled by
  the load;
- shaft: 1x and 2x running speed (33.3 Hz, 66.7 Hz), 0.02 g and 0.008 g times the load;
- slow healthy wander: load = 1 + 4 % daily cycle + an Ornstein-Uhlenbeck wander (6 % sd, 2-day
  time constant); temperature = 10 C daily cycle + its own 2-day wander;
- rare sensor glitches: with probability `glitch_rate` per burst and channel, a single sample of
  +-(1..3) g (electrical spikes that IMS files contain too);
- the defect (channel `faulty`, from `onset_days`): outer-race impacts at BPFO = 7.09 x shaft
  (236.4 Hz) with 1.5 % random slip, each exciting a 4.2 kHz resonance (damping ratio 4 %). Impact
  amplitude grows as severity s(t) = (e^(g u) - 1) / (e^g - 1), u = (t - onset) / (end - onset),
  growth g = `growth` (5: slow at first, steep near the end, the shape of IMS test 2's RMS trend),
  times `impact_g`; the background of that channel grows by 1 + 2 s (late-stage wear debris).

`generate(...)` yields (capture time, samples (n, channels)) for in-process use; `write(...)` writes
the directory. Ground truth is returned by `truth(...)`: onset and end times (epoch seconds, UTC).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

START = datetime(2004, 2, 12, 10, 32, 39, tzinfo=timezone.utc).timestamp()  # IMS test 2's first file
SHAFT_HZ = 2000 / 60
BPFO = 7.09 * SHAFT_HZ  # ZA-2115 outer-race defect frequency (236.4 Hz)
DAY = 86400.0


@dataclass(frozen=True)
class RunSpec:
    days: float = 7.0
    onset_days: float = 3.5
    every_min: float = 10.0
    rate: float = 20000.0
    samples: int = 20480
    channels: int = 4
    faulty: int = 0
    growth: float = 5.0
    impact_g: float = 1.5
    glitch_rate: float = 0.003
    seed: int = 0

    @property
    def bursts(self) -> int:
        return int(round(self.days * DAY / (60 * self.every_min))) + 1


def truth(spec: RunSpec) -> tuple[float, float]:
    """(onset, end) in epoch seconds: the defect starts at onset, the last burst is the failure."""
    return START + spec.onset_days * DAY, START + (spec.bursts - 1) * spec.every_min * 60


def _ou(rng, n: int, dt: float, tau: float, sd: float) -> np.ndarray:
    """Ornstein-Uhlenbeck path (n steps of dt), stationary standard deviation sd."""
    a = np.exp(-dt / tau)
    x = np.empty(n)
    x[0] = rng.normal(0, sd)
    shocks = rng.normal(0, sd * np.sqrt(1 - a * a), n)
    for i in range(1, n):
        x[i] = a * x[i - 1] + shocks[i]
    return x


def _resonance(freqs: np.ndarray, f0: float, q: float) -> np.ndarray:
    """|H(f)| of a second-order resonance with peak gain 1 at f0."""
    r = freqs / f0
    return 1.0 / np.sqrt((1 - r * r) ** 2 * q * q + r * r)


def generate(spec: RunSpec):
    """Yield (capture time, (samples, channels) array in g), bursts in time order."""
    rng = np.random.default_rng(spec.seed)
    n, rate, m = spec.samples, spec.rate, spec.bursts
    dt = spec.every_min * 60
    times = START + np.arange(m) * dt
    days = (times - START) / DAY
    phase = rng.uniform(0, 2 * np.pi, 2)
    load = 1 + 0.04 * np.sin(2 * np.pi * days + phase[0]) + _ou(rng, m, dt, 2 * DAY, 0.06)
    temp = 10 * np.sin(2 * np.pi * days + phase[1]) + _ou(rng, m, dt, 2 * DAY, 4.0)
    onset, end = truth(spec)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    t = np.arange(n) / rate
    base_res = rng.uniform(0.95, 1.05, (spec.channels, 2)) * [3000.0, 6500.0]
    for k in range(m):
        shift = 1 - 0.001 * temp[k]  # resonances soften as the structure warms
        x = np.empty((n, spec.channels))
        for c in range(spec.channels):
            shape = 0.35 + _resonance(freqs, base_res[c, 0] * shift, 8) + 0.6 * _resonance(freqs, base_res[c, 1] * shift, 8)
            noise = np.fft.irfft(np.fft.rfft(rng.normal(0, 1, n)) * shape, n)
            noise *= 0.07 / np.sqrt(np.mean(shape**2))
            x[:, c] = load[k] * (noise + 0.02 * np.sin(2 * np.pi * SHAFT_HZ * t + rng.uniform(0, 6.3))
                                 + 0.008 * np.sin(4 * np.pi * SHAFT_HZ * t + rng.uniform(0, 6.3)))
        if times[k] >= onset:
            u = (times[k] - onset) / max(end - onset, 1.0)
            s = (np.exp(spec.growth * u) - 1) / (np.exp(spec.growth) - 1)
            x[:, spec.faulty] += _impacts(rng, n, rate, spec.impact_g * s * load[k])
            x[:, spec.faulty] *= 1 + 2 * s
        glitch = rng.random(spec.channels) < spec.glitch_rate
        for c in np.flatnonzero(glitch):
            x[rng.integers(n), c] += rng.choice([-1, 1]) * rng.uniform(1, 3)
        yield float(times[k]), x


def _impacts(rng, n: int, rate: float, amplitude: float) -> np.ndarray:
    """Outer-race impacts at BPFO with slip, each ringing a 4.2 kHz mode (4 % damping)."""
    period = rate / BPFO
    starts = np.cumsum(period * (1 + 0.015 * rng.normal(size=int(n / period) + 2))) - rng.uniform(0, period)
    train = np.zeros(n)
    idx = starts[(starts >= 0) & (starts < n)].astype(int)
    train[idx] = amplitude * (1 + 0.2 * rng.normal(size=len(idx)))
    ring = np.arange(int(0.004 * rate)) / rate
    kernel = np.exp(-0.04 * 2 * np.pi * 4200 * ring) * np.sin(2 * np.pi * 4200 * ring)
    return np.convolve(train, kernel)[:n]


def name(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y.%m.%d.%H.%M.%S")


def write(spec: RunSpec, directory: str) -> tuple[float, float]:
    """Write every burst as an IMS-style text file; returns truth(spec)."""
    os.makedirs(directory, exist_ok=True)
    for ts, x in generate(spec):
        np.savetxt(os.path.join(directory, name(ts)), x, fmt="%.3f", delimiter="\t")
    return truth(spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", metavar="OUT_DIR")
    for field, default in RunSpec.__dataclass_fields__.items():
        ap.add_argument(f"--{field.replace('_', '-')}", type=type(default.default), default=default.default)
    args = ap.parse_args()
    spec = RunSpec(**{f: getattr(args, f) for f in RunSpec.__dataclass_fields__})
    onset, end = write(spec, args.out)
    print(f"{spec.bursts} bursts in {args.out}; defect onset {name(onset)}, failure {name(end)}")


if __name__ == "__main__":
    main()
