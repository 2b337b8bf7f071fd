"""The verdict: which fault explains a window, with the evidence an analyst would check.

Bearing faults (outer race, inner race, ball, cage) are looked for in the squared-envelope
spectra of the band the fast kurtogram picks and of the whole prewhitened band (bearings.py);
shaft faults (imbalance, misalignment, looseness) in the velocity spectrum's shaft orders
(orders.py). A bearing fault is named when its line series scores `BEARING_MIN_DB` above the
decoys' null (the score chance reaches in the same window) and `BEARING_MARGIN_DB` above the
runner-up series; a shaft fault when its pattern's rules hold; the more confident one wins;
`unknown` when nothing decides.

The two thresholds were chosen by leave-one-file-out over the CWRU drive-end files
(bench/diagnosis.py prints the choice per held-out file; docs/diagnosis.md has the figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.diagnosis.bearings import bearing_patterns
from models.diagnosis.machine import MachineConfig
from models.diagnosis.orders import order_spectrum, shaft_faults

BEARING_MIN_DB = 3.5  # excess of the line series over the decoys' null: chosen on all CWRU dev files (bench/diagnosis.py)
BEARING_MARGIN_DB = 0.0  # over the next-best series: leave-one-file-out chose 0 for 13 of 14 held-out files
_MEASURED_1X = 4.0  # 1x this far above its neighbourhood: the running speed is measured from it ...
_MEASURED_TOL = 0.015  # ... to within this (Hann-window peak interpolation at ~3 Hz bins)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """`fault`: one of machine.FAULTS; `component`: a bearing's name, "shaft", or "" for unknown;
    `confidence` 0..1; `evidence`: frequencies (Hz), amplitudes and ratios to the noise floor."""

    fault: str
    component: str
    confidence: float
    evidence: dict = field(default_factory=dict)

    def payload(self) -> dict:
        return {"fault": self.fault, "component": self.component, "confidence": round(float(self.confidence), 3),
                "evidence": self.evidence}


def _ball_before_cage(scores: list) -> list:
    """A ball defect passes through the load zone at the cage speed, so its impacts are modulated
    at FTF and FTF lines come with it (Randall & Antoni 2011, sec. 2.2); a cage defect makes no
    2 x BSF lines. When the cage series leads and the same bearing's ball series reaches at least
    half its excess over the decoys' null, the FTF lines are taken as the ball's modulation: the
    cage series leaves the ranking (its excess is kept in the ball's evidence as
    `ftf_lines_excess_db`). (A strong FTF train alone also lights the ball series a little, as
    2 x BSF is close to 12 x FTF for many bearings, hence half, not any.)"""
    cage = scores[0]
    ball = next((s for s in scores if s[1] == "ball" and s[2] == cage[2]), None) if cage[1] == "cage" else None
    if ball is None or ball[0] <= 0 or ball[0] < 0.5 * cage[0]:
        return scores
    ball[3]["ftf_lines_excess_db"] = round(cage[0], 2)
    return [ball] + [s for s in scores[1:] if s is not ball]


def diagnose(window: np.ndarray, fs: float, machine: MachineConfig, channels: tuple[str, ...], *,
             min_db: float = BEARING_MIN_DB, margin_db: float = BEARING_MARGIN_DB) -> Diagnosis:
    """Name the fault in one window.

    Parameters
    ----------
    window : acceleration in g, shape (n, len(channels)), n >= 256; vibration channels only.
    fs : sample rate, Hz.
    machine : shaft speed, bearings (defect orders), tolerances.
    channels : names of the columns (to find `machine.axial_channel`; the others are radial).
    min_db, margin_db : the bearing thresholds (module docstring); the bench sweeps them.

    Cost: one FFT per channel, one batched inverse FFT per kurtogram level, a few small vector
    operations; ~2 ms of one core for 4096 x 3 (bench/diagnosis.py). Raises ValueError on a
    window of the wrong shape or shorter than 256 samples.
    """
    x = np.asarray(window, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(channels) or x.shape[0] < 256:
        raise ValueError(f"window must be (n >= 256, {len(channels)}), got {x.shape}")
    x = np.ascontiguousarray(x.T)  # (axes, n): every FFT runs along contiguous rows
    n = x.shape[1]
    fr = machine.shaft_frequency
    tol = machine.speed_tolerance
    axial = channels.index(machine.axial_channel) if machine.axial_channel in channels else None
    radial = np.array([i for i in range(len(channels)) if i != axial] or [0])

    orders = order_spectrum(x, fs, fr, tol)
    speed = {"shaft_hz": round(fr, 3), "speed_from": "config"}
    if orders.prominence >= _MEASURED_1X:
        fr, tol = orders.shaft_hz, _MEASURED_TOL
        speed = {"shaft_hz": round(fr, 3), "speed_from": "1x line"}

    candidates: list[tuple[str, str, float, dict]] = []  # (fault, component, confidence, evidence)
    bearing_scores: list[tuple[float, str, str, dict]] = []
    if machine.bearings:
        bearing_scores = bearing_patterns(x, fs, machine.bearings, fr, tol, channels)
    if bearing_scores:
        bearing_scores = _ball_before_cage(bearing_scores)
        best, fault, name, ev = bearing_scores[0]
        runner = bearing_scores[1] if len(bearing_scores) > 1 else (0.0, "none", "", {})
        margin = best - runner[0]
        ev["runner_up"] = {"fault": runner[1], "excess_db": round(runner[0], 2)}
        if best >= min_db and margin >= margin_db:
            strength = min((best - min_db) / 10.0, (margin - margin_db) / (2 * max(margin_db, 1.0)), 1.0)
            candidates.append((fault, name, 0.5 + 0.5 * strength, {**speed, **ev}))

    shaft_evidence = {"shaft_hz": round(orders.shaft_hz, 3), "1x_prominence": round(orders.prominence, 2)}
    for fault, (strength, ev) in shaft_faults(orders, radial, axial, machine.low_order_min_mm_s).items():
        shaft_evidence.update(ev)  # one flat dict: the patterns share 1x_mm_s, 2x_mm_s
        if strength > 0:
            candidates.append((fault, "shaft", 0.5 + 0.5 * strength, {"shaft_hz": round(orders.shaft_hz, 3), **ev}))

    if not candidates:
        evidence = {"shaft": shaft_evidence}
        if bearing_scores:
            best, fault, name, ev = bearing_scores[0]
            evidence["best_bearing_pattern"] = {"fault": fault, "bearing": name, **ev}
        return Diagnosis("unknown", "", 0.0, evidence)
    fault, component, confidence, ev = max(candidates, key=lambda c: c[2])
    others = [{"fault": f, "confidence": round(c, 3)} for f, _, c, _ in candidates if f != fault]
    if others:
        ev = {**ev, "also": others}
    return Diagnosis(fault, component, float(confidence), ev)
