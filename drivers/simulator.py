"""A simulated rotating machine with a rolling-element bearing: the physics behind `pdm-agent simulate`.

The machine is a vertical pump: the shaft runs along z, so `az` carries +1 g of gravity and the
radial axes `ax`, `ay` see the rotating imbalance force 90 degrees apart. Everything is a function
of machine time t = samples generated / rate, so a run is reproducible from its seed and two calls
of n/2 samples give the same data as one call of n.

Signal model per radial/axial axis (acceleration, g):

- shaft harmonics 1x/2x/3x with per-axis amplitude and phase, on a shaft angle that wanders by
  ~0.2 % and slows slightly with load (induction-motor slip);
- broadband noise, plus noise filtered by one structural resonance (a lightly damped mode of the
  bearing housing, placed inside the sensor band);
- bearing faults as impacts at the defect frequency that ring that resonance [1]_.

Temperature (deg C) is ambient plus a load-driven rise through the housing's first-order thermal lag.

References
----------
.. [1] R. B. Randall, J. Antoni, "Rolling element bearing diagnostics - A tutorial",
   Mechanical Systems and Signal Processing 25 (2011) 485-520.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAULTS = ("outer-race", "inner-race", "imbalance", "overheat")
CHANNELS = ("ax", "ay", "az", "temp")  # the only list of the simulated machine's channels
TEMPERATURE_CHANNELS = ("temp",)  # deg C; the others are acceleration in g
FAULT_RAMP_S = 5.0  # a seeded fault grows from nothing to full severity over this much machine time


@dataclass(frozen=True, slots=True)
class BearingGeometry:
    """Rolling-element bearing geometry; diameters in mm, contact angle in degrees."""

    n_balls: int
    ball_d_mm: float
    pitch_d_mm: float
    contact_angle_deg: float = 0.0


SKF_6205 = BearingGeometry(n_balls=9, ball_d_mm=7.94, pitch_d_mm=39.04, contact_angle_deg=0.0)


def defect_frequencies(rpm: float, geometry: BearingGeometry = SKF_6205) -> dict[str, float]:
    """Kinematic bearing defect frequencies in Hz (no slip).

    Returns `bpfo` (ball pass, outer race), `bpfi` (ball pass, inner race), `bsf` (ball spin)
    and `ftf` (fundamental train, i.e. cage).

    >>> f = defect_frequencies(1797.0)
    >>> {k: round(v, 2) for k, v in f.items()}
    {'bpfo': 107.36, 'bpfi': 162.19, 'bsf': 70.58, 'ftf': 11.93}
    """
    fr = rpm / 60.0
    rho = geometry.ball_d_mm / geometry.pitch_d_mm * np.cos(np.radians(geometry.contact_angle_deg))
    n = geometry.n_balls
    return {
        "bpfo": float(n / 2 * fr * (1 - rho)),
        "bpfi": float(n / 2 * fr * (1 + rho)),
        "bsf": float(geometry.pitch_d_mm / (2 * geometry.ball_d_mm) * fr * (1 - rho**2)),
        "ftf": float(fr / 2 * (1 - rho)),
    }


# Healthy shaft harmonics (g, amplitude) per axis: rows ax, ay, az; columns 1x, 2x, 3x.
# 1x ~0.035 g at 30 Hz is ~1.3 mm/s RMS velocity: ISO 10816-3 zone A/B for a group-2 machine.
_HARMONICS_G = np.array([[0.035, 0.012, 0.005], [0.030, 0.010, 0.004], [0.020, 0.008, 0.003]])
_NOISE_G = 0.015  # broadband acceleration noise per axis (g RMS)
_RESONANT_NOISE_G = 0.010  # RMS of the resonance hump that running noise excites
_RESONANCE_ZETA = 0.06  # damping ratio: the ringing decays in ~2 ms, as housing modes do
_IMPACT_PEAK_G = {"outer-race": 0.8, "inner-race": 0.5}  # peak ringing on ax at full severity
_IMPACT_AXIS_GAIN = np.array([1.0, 0.6, 0.25])  # the load acts radially, little reaches z
_IMPACT_SPREAD = 0.15  # per-impact amplitude scatter (relative)
_BPF_SLIP = 0.003  # rolling elements slip a little: real defect lines sit just below theory
_IMBALANCE_GAIN = np.array([5.0, 5.0, 0.5])  # 1x grows x6 radially at full severity
_AMBIENT_C = 22.0
_LOAD_RISE_C = 24.0  # steady-state rise at full load: ~40 C at the mean load of 0.75
_THERMAL_TAU_S = 600.0  # housing thermal time constant
_TEMP_NOISE_C = 0.03
_OVERHEAT_C_PER_MIN = 1.5  # initial slope; lubricant breakdown then accelerates it ...
_OVERHEAT_C_PER_MIN2 = 0.5  # ... by this much per minute, per minute
_OVERHEAT_MAX_C = 80.0


class _Sinusoids:
    """Sum of cosines a*cos(w*t + p): value and exact time integral, so phases need no state."""

    def __init__(self, amp: np.ndarray, omega: np.ndarray, phase: np.ndarray) -> None:
        self.amp, self.omega, self.phase = amp, omega, phase

    def value(self, t: np.ndarray) -> np.ndarray:
        return np.cos(np.outer(t, self.omega) + self.phase) @ self.amp

    def integral(self, t: np.ndarray) -> np.ndarray:
        """Integral from 0 to t."""
        k = self.amp / self.omega
        return (np.sin(np.outer(t, self.omega) + self.phase) - np.sin(self.phase)) @ k

    def lagged(self, tau: float) -> _Sinusoids:
        """Steady-state output of a first-order lag 1/(1 + s*tau) driven by these sinusoids."""
        wt = self.omega * tau
        return _Sinusoids(self.amp / np.sqrt(1 + wt**2), self.omega, self.phase - np.arctan(wt))


class Machine:
    """A rotating machine with a rolling-element bearing, sampled at `rate` Hz.

    Parameters
    ----------
    rate : sample rate in Hz.
    rpm : nominal shaft speed.
    seed : everything random (amplitudes, phases, noise, impacts) follows from it.
    fault : one of FAULTS, or None for a healthy machine.
    fault_at : machine time (s) when the fault appears; it reaches full severity FAULT_RAMP_S later.
    channels : which of "ax", "ay", "az" (g) and "temp" (deg C) to output, in this order.
    bearing : bearing geometry, for the defect frequencies.

    Examples
    --------
    >>> m = Machine(rate=3200.0, seed=1)
    >>> x = m.generate(3200)
    >>> x.shape
    (3200, 4)
    >>> bool(abs(x[:, 2].mean() - 1.0) < 0.01), bool(30 < x[:, 3].mean() < 50)
    (True, True)
    """

    def __init__(
        self,
        rate: float = 3200.0,
        rpm: float = 1780.0,
        seed: int = 0,
        fault: str | None = None,
        fault_at: float = 0.0,
        channels: tuple = CHANNELS,
        bearing: BearingGeometry = SKF_6205,
    ) -> None:
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown or not channels:
            raise ValueError(f"unknown channels {unknown}; expected a subset of {CHANNELS}")
        if rate <= 0 or rpm <= 0:
            raise ValueError("rate and rpm must be positive")
        self.rate = rate
        self.rpm = rpm
        self.seed = seed
        self.fault = fault
        self.fault_at = fault_at
        self.channels = tuple(channels)
        self.bearing = bearing
        self._build()

    def _build(self) -> None:
        # Separate streams, so the impacts of a bearing fault do not shift the noise: a faulty
        # machine equals the healthy one with the same seed until `fault_at`.
        params, noise, impacts = (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(3))
        self._noise_rng, self._impact_rng = noise, impacts
        self._n = 0  # samples generated so far: the machine clock

        # Harmonics as coefficients of [sin hθ, cos hθ] per axis: A sin(hθ+φ) = A cosφ sin hθ + A sinφ cos hθ.
        amp = _HARMONICS_G * (1 + 0.1 * params.standard_normal(_HARMONICS_G.shape))
        phase = params.uniform(0, 2 * np.pi, _HARMONICS_G.shape)
        phase[1, 0] = phase[0, 0] - np.pi / 2  # a rotating force: ay lags ax by a quarter turn
        self._coef = np.empty((6, 3))
        self._coef[0::2] = (amp * np.cos(phase)).T
        self._coef[1::2] = (amp * np.sin(phase)).T

        # Load (0..1, mean 0.75) wanders with periods of 5..40 min; speed wanders ~0.2 % and drops
        # 1 % per unit load above the mean (slip).
        load_w = 2 * np.pi / params.uniform(300, 2400, 3)
        self._load = _Sinusoids(params.uniform(0.03, 0.07, 3), load_w, params.uniform(0, 2 * np.pi, 3))
        wander_w = 2 * np.pi * params.uniform(0.05, 0.5, 3)
        self._speed = _Sinusoids(
            np.concatenate([params.uniform(0.0005, 0.001, 3), -0.01 * self._load.amp]),
            np.concatenate([wander_w, load_w]),
            np.concatenate([params.uniform(0, 2 * np.pi, 3), self._load.phase]),
        )
        self._load_lagged = self._load.lagged(_THERMAL_TAU_S)
        self._shaft_hz = self.rpm / 60.0

        # Resonance kernel h[n] = e^{-ζω t} sin(ω_d t), peak 1, truncated at 1e-3; convolved
        # block by block with overlap-add (the tail carried in _tail) so blocks join seamlessly.
        f_res = min(2800.0, 0.36 * self.rate)  # keep the mode inside the sensor band
        wn = 2 * np.pi * f_res
        decay = _RESONANCE_ZETA * wn
        length = int(np.ceil(np.log(1e3) / decay * self.rate)) + 1
        tk = np.arange(length) / self.rate
        h = np.exp(-decay * tk) * np.sin(wn * np.sqrt(1 - _RESONANCE_ZETA**2) * tk)
        self._kernel = h / np.abs(h).max()
        self._resonant_noise_gain = _RESONANT_NOISE_G / np.sqrt(np.sum(self._kernel**2))
        self.resonance_hz = f_res
        self._tail = np.zeros((length, 3))

        if self.fault in _IMPACT_PEAK_G:
            f = defect_frequencies(self.rpm, self.bearing)
            key = "bpfo" if self.fault == "outer-race" else "bpfi"
            self._defect_order = f[key] / self._shaft_hz * (1 - _BPF_SLIP)  # impacts per shaft turn
            # Inner-race defect rotates through the load zone once per turn: strong 1x modulation.
            self._mod_depth = 0.1 if self.fault == "outer-race" else 0.8
            self._mod_phase = params.uniform(0, 2 * np.pi)

    def _severity(self, t: np.ndarray) -> np.ndarray:
        return np.clip((t - self.fault_at) / FAULT_RAMP_S, 0.0, 1.0)

    def _shaft_turns(self, t: np.ndarray) -> np.ndarray:
        return self._shaft_hz * (t + self._speed.integral(t))

    def generate(self, n: int) -> np.ndarray:
        """The next `n` samples, shape (n, len(channels)), float64; continuous with the previous call."""
        i = self._n + np.arange(-1, n)  # one sample of history to find impacts at the block edge
        self._n += n
        t_ext = i / self.rate
        turns_ext = self._shaft_turns(t_ext)
        t, turns = t_ext[1:], turns_ext[1:]
        frac = turns - np.floor(turns)
        angle = 2 * np.pi * frac
        basis = np.empty((n, 6))
        for h in range(3):  # three harmonics, each a whole-block vector op
            basis[:, 2 * h] = np.sin((h + 1) * angle)
            basis[:, 2 * h + 1] = np.cos((h + 1) * angle)
        accel = basis @ self._coef
        if self.fault == "imbalance":
            accel += (self._severity(t)[:, None] * (basis[:, :2] @ self._coef[:2])) * _IMBALANCE_GAIN

        load = 0.75 + self._load.value(t)
        z = self._noise_rng.standard_normal((n, 7))  # 3 broadband, 3 resonance excitation, 1 temp
        accel += z[:, :3] * (_NOISE_G * (0.7 + 0.4 * load))[:, None]

        excite = np.zeros((n + 1, 3))
        excite[:n] = z[:, 3:6] * self._resonant_noise_gain
        if self.fault in _IMPACT_PEAK_G:
            excite[:, :] += self._impacts(turns_ext, t, n)[:, None] * _IMPACT_AXIS_GAIN
        ring = np.empty((n + len(self._kernel), 3))
        for axis in range(3):
            ring[:, axis] = np.convolve(excite[:, axis], self._kernel)
        ring[: len(self._tail)] += self._tail
        self._tail = ring[n:].copy()
        accel += ring[:n]
        accel[:, 2] += 1.0  # gravity on the vertical shaft axis

        temp = _AMBIENT_C + _LOAD_RISE_C * (0.75 + self._load_lagged.value(t)) + _TEMP_NOISE_C * z[:, 6]
        if self.fault == "overheat":
            minutes = np.clip(t - self.fault_at, 0.0, None) / 60.0
            temp += np.minimum(_OVERHEAT_C_PER_MIN * minutes + _OVERHEAT_C_PER_MIN2 * minutes**2, _OVERHEAT_MAX_C)

        columns = {"ax": accel[:, 0], "ay": accel[:, 1], "az": accel[:, 2], "temp": temp}
        return np.column_stack([columns[c] for c in self.channels])

    def _impacts(self, turns_ext: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
        """Impulse train (length n+1) of the bearing defect, in g of peak ringing.

        An impact happens each time the defect angle passes a rolling element; its sub-sample
        time is split linearly over two samples (one sample later, so it never falls in the
        previous block). Exactly one random amplitude is drawn per impact, in order, so the
        draws do not depend on how the run is cut into blocks.
        """
        pos = turns_ext * self._defect_order
        k = np.floor(pos)
        hit = np.nonzero(k[1:] > k[:-1])[0]  # impact between sample hit-1 and hit (block indices)
        train = np.zeros(n + 1)
        if hit.size == 0:
            return train
        before, after = pos[hit], pos[hit + 1]
        frac = (k[hit + 1] - before) / (after - before)  # 0..1 from sample hit-1 to hit
        th = t[hit]
        amp = np.clip(1 + _IMPACT_SPREAD * self._impact_rng.standard_normal(hit.size), 0.0, None)
        shaft_angle = 2 * np.pi * turns_ext[hit + 1]
        amp *= 1 - self._mod_depth / 2 + self._mod_depth / 2 * np.cos(shaft_angle + self._mod_phase)
        amp *= _IMPACT_PEAK_G[self.fault] * self._severity(th)
        # time hit-1+frac, delayed one sample: weight (1-frac) on `hit`, frac on `hit+1`
        train += np.bincount(hit, weights=amp * (1 - frac), minlength=n + 1)
        train += np.bincount(hit + 1, weights=amp * frac, minlength=n + 1)
        return train
