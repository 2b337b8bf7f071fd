"""Bearing defect patterns of one window: envelope spectra of the demodulation bands, and the
score of every bearing's outer-race, inner-race, ball and cage line series in them.

Two demodulation bands are read, as in the CWRU benchmark of Smith & Randall [1]_: the band the
fast kurtogram picks (most impulsive, Antoni 2007) and the whole prewhitened spectrum (cepstral
prewhitening, which Smith & Randall found the most robust single method on that data). Each
pattern keeps the better of its two scores.

References
----------
.. [1] W. A. Smith, R. B. Randall, "Rolling element bearing diagnostics using the Case Western
   Reserve University data: A benchmark study", MSSP 64-65 (2015) 100-131.
"""

from __future__ import annotations

import numpy as np

from models.diagnosis.envelope import match_lines, noise_floor, scale_grid
from models.diagnosis.kurtogram import Band, fast_kurtogram, squared_envelope_spectrum, whitened_spectrum

HARMONICS = 3  # lines per defect series: the same for every fault, so their scores compare
BAND_FACTOR = 3.2  # the demodulated band must be wider than ~3 harmonics of the fastest defect


def defect_orders(bearing) -> dict[str, float]:
    """{fault: order} of one bearing. A ball defect strikes both races once per spin, so its
    lines sit at 2 x BSF (Randall & Antoni 2011, sec. 2.1)."""
    return {"outer_race": bearing.bpfo, "inner_race": bearing.bpfi, "ball": 2 * bearing.bsf, "cage": bearing.ftf}


def bearing_patterns(x: np.ndarray, fs: float, bearings, shaft_hz: float, tolerance: float,
                     channels: tuple[str, ...]) -> list[tuple[float, str, str, dict]]:
    """Score every (bearing, fault) line series; best first.

    `x`: acceleration, shape (axes, n). `shaft_hz` +- `tolerance` (fraction): the running speed.
    Returns [(score_db, fault, bearing name, evidence)], where evidence has the axis, band,
    spectral kurtosis, the expected and found line frequencies (Hz), their amplitudes and
    ratios to the noise floor, and the sidebands for inner race (1x) and ball (FTF).
    """
    n = x.shape[1]
    df = fs / n
    top = max(max(defect_orders(b).values()) for b in bearings) * shaft_hz * (1 + tolerance)
    spec = whitened_spectrum(x)
    try:
        bands = fast_kurtogram(spec, fs, n, min(BAND_FACTOR * top, fs / 2 * 0.95))
    except ValueError:
        return []
    axis = int(np.argmax([b.kurtosis for b in bands]))
    half = spec.shape[1]
    reads = []
    for band in (bands[axis], Band(0.0, half * df, float("nan"), 0.0, 0, half)):
        es = squared_envelope_spectrum(spec[axis], band)
        reads.append((band, es, es / noise_floor(es)))
    out = []
    for bearing in bearings:
        for fault, order in defect_orders(bearing).items():
            side = shaft_hz if fault == "inner_race" else (bearing.ftf * shaft_hz if fault == "ball" else 0.0)
            grid = scale_grid(tolerance, df, HARMONICS * order * shaft_hz)
            found = [(m, band) for band, es, ratio in reads
                     if (m := match_lines(ratio, es, df, order * shaft_hz, HARMONICS, grid, side)) is not None]
            if not found:
                continue
            m, band = max(found, key=lambda f: f[0].score_db)
            ev = {"axis": channels[axis], "band_hz": [round(band.lo_hz, 1), round(band.hi_hz, 1)],
                  "spectral_kurtosis": round(bands[axis].kurtosis, 3), "expected_hz": round(order * shaft_hz, 2),
                  "speed_factor": round(m.scale, 4), "score_db": round(m.score_db, 2),
                  "lines": [{"hz": round(f, 2), "amplitude": float(f"{a:.4g}"), "ratio_to_floor": round(r, 2)}
                            for f, a, r in m.lines]}
            if side:
                ev["sidebands_hz"] = round(side * m.scale, 2)
                ev["sidebands_db"] = round(m.sidebands_db, 2)
            out.append((m.score_db, fault, bearing.name, ev))
    return sorted(out, key=lambda s: -s[0])
