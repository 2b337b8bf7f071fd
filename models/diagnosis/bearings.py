"""Bearing defect patterns of one window: envelope spectra of the demodulation bands, and the
score of every bearing's outer-race, inner-race, ball and cage line series in them.

Two demodulation bands are read, as in the CWRU benchmark of Smith & Randall [1]_: the band the
fast kurtogram picks (most impulsive, Antoni 2007) and the whole prewhitened spectrum (cepstral
prewhitening, which Smith & Randall found the most robust single method on that data). Each
pattern keeps the better of its two scores.

A line series' score (line-to-floor ratio over its harmonics, dB) is judged against the same
search run at decoy orders where no defect line can be (envelope.decoy_orders): their median is
the score a series reaches by chance in this very window, at this resolution and tolerance, so
`excess_db = score_db - null_db` means the same on a 3.2 kHz sensor as on a 12 kHz one (a CFAR
test, as radar detectors set their threshold from the neighbouring cells).

References
----------
.. [1] W. A. Smith, R. B. Randall, "Rolling element bearing diagnostics using the Case Western
   Reserve University data: A benchmark study", MSSP 64-65 (2015) 100-131.
"""

from __future__ import annotations

import numpy as np

from models.diagnosis.envelope import decoy_orders, match_lines, noise_floor, scale_grid, series_scores
from models.diagnosis.kurtogram import Band, fast_kurtogram, squared_envelope_spectrum, whitened_spectrum

HARMONICS = 3  # lines per defect series: the same for every fault, so their scores compare
BAND_FACTOR = 3.2  # the demodulated band must be wider than ~3 harmonics of the fastest defect
HARMONICS_NEEDED = 2  # a series (decoys included) is measured only with at least two lines in the spectrum


def defect_orders(bearing) -> dict[str, float]:
    """{fault: order} of one bearing. A ball defect strikes both races once per spin, so its
    lines sit at 2 x BSF (Randall & Antoni 2011, sec. 2.1)."""
    return {"outer_race": bearing.bpfo, "inner_race": bearing.bpfi, "ball": 2 * bearing.bsf, "cage": bearing.ftf}


def bearing_patterns(x: np.ndarray, fs: float, bearings, shaft_hz: float, tolerance: float,
                     channels: tuple[str, ...]) -> list[tuple[float, str, str, dict]]:
    """Score every (bearing, fault) line series by its excess over the decoys' null, dB; best first.

    `x`: acceleration, shape (axes, n). `shaft_hz` +- `tolerance` (fraction): the running speed.
    Returns [(excess_db, fault, bearing name, evidence)]; the evidence of the best two has the
    axis, band, spectral kurtosis, the expected and found line frequencies (Hz), their amplitudes
    and ratios to the noise floor, and the sidebands for inner race (1x) and ball (FTF).
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
    patterns = [(bearing, fault, order) for bearing in bearings for fault, order in defect_orders(bearing).items()]
    taken = tuple(o for b in bearings for o in (b.bpfo, b.bpfi, b.bpfi - 1, b.bpfi + 1, 2 * b.bsf))
    freqs = np.concatenate([[order * shaft_hz for _, _, order in patterns], decoy_orders(taken) * shaft_hz])
    grid = scale_grid(tolerance, df, HARMONICS * freqs.max())  # one grid, fine enough for every series
    scores = np.stack([series_scores(ratio, df, freqs, HARMONICS, grid) for _, _, ratio in reads])
    best_read, best = scores.argmax(axis=0), scores.max(axis=0)
    p = len(patterns)
    # only decoys with two harmonics inside the spectrum measure the null: one beyond Nyquist
    # scores 0 dB, and a null of 0 would let any chance line pass (a 200 Hz sensor called 'cage')
    measurable = HARMONICS_NEEDED * freqs[p:] * (1 + tolerance) / df + 1 < half
    if not measurable.any():
        return []
    null = float(np.median(best[p:][measurable]))
    out = []
    for rank, i in enumerate(np.argsort(-best[:p], kind="stable")):
        bearing, fault, order = patterns[i]
        ev = {"score_db": round(float(best[i]), 2), "null_db": round(null, 2), "excess_db": round(float(best[i]) - null, 2)}
        if rank < 2:  # the winner and the runner-up: the lines an analyst would check
            band, es, ratio = reads[best_read[i]]
            side = shaft_hz if fault == "inner_race" else (bearing.ftf * shaft_hz if fault == "ball" else 0.0)
            m = match_lines(ratio, es, df, order * shaft_hz, HARMONICS, grid, side)
            if m is not None:
                ev = {"axis": channels[axis], "band_hz": [round(band.lo_hz, 1), round(band.hi_hz, 1)],
                      "spectral_kurtosis": round(bands[axis].kurtosis, 3), "expected_hz": round(order * shaft_hz, 2),
                      "speed_factor": round(m.scale, 4), **ev,
                      "lines": [{"hz": round(f, 2), "amplitude": float(f"{a:.4g}"), "ratio_to_floor": round(r, 2)}
                                for f, a, r in m.lines]}
                if side:
                    ev["sidebands_hz"] = round(side * m.scale, 2)
                    ev["sidebands_db"] = round(m.sidebands_db, 2)
        out.append((float(best[i]) - null, fault, bearing.name, ev))
    return out
