"""Defect lines in the envelope spectrum: harmonics at a bearing's defect frequency, searched
within a tolerance for speed error and rolling-element slip, measured against the noise floor.

Envelope analysis finds a bearing defect as a series of lines at its characteristic frequency
(BPFO, BPFI, 2 x BSF, FTF) and its harmonics in the spectrum of the squared envelope; an
inner-race defect passes through the load zone once per turn, so its lines carry sidebands at
the shaft frequency; a ball defect's lines carry sidebands at the cage frequency (Randall &
Antoni 2011, sec. 2.2 and 3) [1]_. Rolling elements slip 1-2 %, so real lines sit slightly off
the kinematic ones [1]_, and the shaft speed itself is known only to the configured tolerance: the
search scales all harmonics of one pattern together by a common factor (one slip and one
speed for the whole series), which keeps the tolerance honest at high harmonics.

References
----------
.. [1] R. B. Randall, J. Antoni, "Rolling element bearing diagnostics - A tutorial",
   Mechanical Systems and Signal Processing 25 (2011) 485-520.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SLIP = 0.02  # lines sit up to 2 % below the kinematic frequency (Randall & Antoni 2011, sec. 2.1)
_FLOOR_BLOCK = 24  # bins per block of the running-median noise floor
_CAP_DB = 30.0  # one huge line must not outvote missing harmonics


@dataclass(frozen=True, slots=True)
class LineMatch:
    """The best series of lines found for one defect frequency.

    `score_db`: mean over the harmonics inside the spectrum of the line-to-floor ratio in dB (each
    clipped to 0..30; 0 when fewer than two harmonics are inside);
    `lines`: per harmonic (frequency Hz, amplitude, ratio to the local noise floor);
    `scale`: the common speed x slip factor that fits best (1.0 = exactly as configured);
    `sidebands_db`: mean ratio in dB of the sidebands (0 when none were asked for)."""

    score_db: float
    lines: tuple[tuple[float, float, float], ...]
    scale: float
    sidebands_db: float = 0.0


def _mean_of_present(db: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Mean dB over the harmonics inside the spectrum (last axis); 0 for a series with fewer than
    two there: one line alone is no series (a harmonic beyond the band is unknown, not absent)."""
    count = ok.sum(axis=-1)
    return np.where(count >= 2, db.sum(axis=-1) / np.maximum(count, 1), 0.0)


def noise_floor(es: np.ndarray) -> np.ndarray:
    """Local noise floor of an amplitude spectrum: the median of blocks of 24 bins, linearly
    interpolated between block centres (a median ignores the lines themselves). Shape as `es`."""
    n = len(es)
    blocks = max(1, n // _FLOOR_BLOCK)
    med = np.median(es[: blocks * _FLOOR_BLOCK].reshape(blocks, -1), axis=1) if n >= _FLOOR_BLOCK else np.median(es)[None]
    centres = (np.arange(blocks) + 0.5) * (n / blocks)
    return np.maximum(np.interp(np.arange(n), centres, med), 1e-12 + 1e-6 * med.max())


def match_lines(ratio: np.ndarray, es: np.ndarray, df: float, freq_hz: float, harmonics: int,
                scales: np.ndarray, sideband_hz: float = 0.0) -> LineMatch | None:
    """Best series of `harmonics` lines at h * freq_hz * s (h = 1..harmonics, one s from `scales`).

    `ratio`: es / noise_floor(es); `es`: envelope amplitude spectrum (bin j = j * df Hz).
    Each line is read as the larger of the two bins around its exact position (a line between
    bins spreads over both). With `sideband_hz`, the ratio at h * f * s +- sideband_hz * s is
    reported as `sidebands_db`. Returns None when even the first harmonic is beyond the spectrum.
    """
    n = len(ratio)
    h = np.arange(1, harmonics + 1)
    pos = np.outer(scales, h * freq_hz) / df  # (scales, harmonics) in bins
    if pos[:, 0].max() + 1 >= n:
        return None
    ok = pos + 1 < n
    lo = np.clip(np.floor(pos).astype(int), 0, n - 2)
    pick = np.where(ratio[lo + 1] > ratio[lo], lo + 1, lo)
    db = np.clip(20 * np.log10(np.maximum(ratio[pick], 1e-12)), 0.0, _CAP_DB) * ok
    score = _mean_of_present(db, ok)
    best = int(score.argmax())
    s = float(scales[best])
    lines = tuple((float(pick[best, i] * df), float(es[pick[best, i]]), float(ratio[pick[best, i]]))
                  for i in range(harmonics) if ok[best, i])
    side = 0.0
    if sideband_hz > 0:
        sb = (np.concatenate([pos[best] - sideband_hz * s / df, pos[best] + sideband_hz * s / df]))
        sb = sb[(sb >= 0) & (sb + 1 < n)]
        if sb.size:
            slo = np.floor(sb).astype(int)
            vals = np.maximum(ratio[slo], ratio[slo + 1])
            side = float(np.clip(20 * np.log10(vals), 0.0, _CAP_DB).mean())
    return LineMatch(float(score[best]), lines, s, side)


def scale_grid(speed_tolerance: float, df: float, top_hz: float) -> np.ndarray:
    """Common factors to try: speed within +-speed_tolerance, times slip 0..SLIP below the
    kinematic line; spaced so the highest line searched (`top_hz`) moves by half a bin per step."""
    lo, hi = (1 - speed_tolerance) * (1 - SLIP), 1 + speed_tolerance
    step = max(0.5 * df / max(top_hz, df), 1e-4)
    return np.arange(lo, hi + step / 2, step)


def series_scores(ratio: np.ndarray, df: float, freqs_hz: np.ndarray, harmonics: int,
                  scales: np.ndarray) -> np.ndarray:
    """`match_lines`' score for many series at once (no details): shape (len(freqs_hz),), dB.
    Used for decoy series, whose scores are the window's own null distribution (a CFAR test:
    the same search run where no defect line can be, so its best chance match is known)."""
    n = len(ratio)
    pos = scales[None, :, None] * (np.arange(1, harmonics + 1) * np.asarray(freqs_hz)[:, None])[:, None, :] / df
    ok = pos + 1 < n
    lo = np.clip(np.floor(pos).astype(int), 0, n - 2)
    best = np.maximum(ratio[lo], ratio[lo + 1])
    db = np.clip(20 * np.log10(np.maximum(best, 1e-12)), 0.0, _CAP_DB) * ok
    return _mean_of_present(db, ok).max(axis=1)


@functools.lru_cache(maxsize=64)  # the same bearings every call: computed once per machine
def decoy_orders(taken: tuple[float, ...], count: int = 8) -> np.ndarray:
    """Orders 0.4..1.1 x the `taken` ones above 1 (defect orders and inner-race sidebands), 8 %
    clear of every taken order and 3 % clear of the shaft harmonics: where no defect series can
    sit. Returns up to `count` of them, spread over the range."""
    taken = np.asarray(taken, dtype=float)
    grid = np.unique(np.round(np.outer(taken[taken > 1.0], np.linspace(0.4, 1.1, 57)).ravel(), 3))
    shaft = np.arange(1, 16, dtype=float)
    free = grid[np.all(np.abs(grid[:, None] / taken[None, :] - 1) > 0.08, axis=1)
                & np.all(np.abs(grid[:, None] / shaft[None, :] - 1) > 0.03, axis=1)]
    out = free if len(free) <= count else free[np.linspace(0, len(free) - 1, count).round().astype(int)]
    out.flags.writeable = False  # shared by every caller (cached)
    return out
