"""Band selection for envelope analysis: the fast kurtogram of spectral kurtosis (Antoni 2007).

A bearing defect excites a structural resonance once per impact, so the band around that
resonance is impulsive while the rest of the spectrum is dominated by gear/shaft tones and noise.
Spectral kurtosis (SK) measures how impulsive each band is: for the complex envelope c of a band,

    SK = E|c|^4 / (E|c|^2)^2 - 2

which is 0 for Gaussian noise, -1 for a steady tone and large for a train of impacts [1]_ [2]_.
The fast kurtogram evaluates SK on Antoni's 1/3-binary tree of bands: at level k the band
[0, fs/2] is cut into 2^k bands, and between levels k and k+1 into 3*2^(k-1) bands [2]_. Here the
band filters are ideal (rectangular in the FFT of the whole window) rather than Antoni's
quasi-analytic FIR tree: every level is then one batched inverse FFT of the spectrum reshaped
into (bands, bins), which costs O(n log n) per level and no per-sample Python.

Before the kurtogram the spectrum is prewhitened (cepstral prewhitening: X / |X|), which
removes discrete shaft and mains components so that SK picks the impulsive band and not a band
with a strong tone (Borghesani et al. 2013); Smith & Randall found it robust on the CWRU data [3]_.

References
----------
.. [1] J. Antoni, "The spectral kurtosis: a useful tool for characterising non-stationary
   signals", Mechanical Systems and Signal Processing 20 (2006) 282-307.
.. [2] J. Antoni, "Fast computation of the kurtogram for the detection of transient faults",
   Mechanical Systems and Signal Processing 21 (2007) 108-124.
.. [3] W. A. Smith, R. B. Randall, "Rolling element bearing diagnostics using the Case Western
   Reserve University data: A benchmark study", MSSP 64-65 (2015) 100-131; P. Borghesani et al.,
   "Application of cepstrum pre-whitening for the diagnosis of bearing faults under variable
   speed conditions", MSSP 36 (2013) 370-384.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Band:
    """The band the kurtogram chose: [lo_hz, hi_hz], its spectral kurtosis, its level (1, 1.6, 2,
    2.6, ... as in Antoni's figure) and where it starts in bins of the whitened spectrum."""

    lo_hz: float
    hi_hz: float
    kurtosis: float
    level: float
    start_bin: int
    width_bins: int


def whitened_spectrum(x: np.ndarray) -> np.ndarray:
    """One-sided spectrum of `x` (shape (..., n), mean removed) with unit magnitude in every bin:
    cepstral prewhitening [3]_. Returns shape (..., n // 2) (the Nyquist bin is dropped so that the
    band grid divides evenly); bin j is j * fs / n Hz."""
    n = x.shape[-1]
    # The FFT treats the window as periodic: the jump from its last sample to its first is one
    # impact per window, which whitening would make the most impulsive thing in a quiet band.
    # A Tukey taper (10 % cosine edges) removes the jump.
    edge = max(1, n // 20)
    taper = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    taper[:edge], taper[n - edge :] = ramp, ramp[::-1]
    spec = np.fft.rfft((x - x.mean(axis=-1, keepdims=True)) * taper, axis=-1)[..., : n // 2]
    spec[..., 0] = 0.0
    return spec / (np.abs(spec) + _EPS)


def _band_counts(half: int, min_width_bins: int) -> list[tuple[float, int]]:
    """(level, number of bands) of the 1/3-binary tree, finest level whose bands are at least
    `min_width_bins` wide."""
    out = [(0.0, 1)]
    k = 1
    while True:
        added = False
        for level, count in ((k - 1 + 0.6, 3 * 2 ** (k - 1)), (float(k), 2**k)):
            if half // count >= max(min_width_bins, 8):
                out.append((level, count))
                added = True
        if not added:
            return out
        k += 1


def fast_kurtogram(spec: np.ndarray, fs: float, n: int, min_width_hz: float) -> list[Band]:
    """The most impulsive band of each signal, by spectral kurtosis on the 1/3-binary band tree.

    Parameters
    ----------
    spec : whitened one-sided spectra, shape (c, n // 2) (see `whitened_spectrum`).
    fs : sample rate in Hz; n : window length in samples.
    min_width_hz : narrowest band allowed. The envelope of a band of width B only holds
        modulation frequencies below B, so this must exceed the highest defect harmonic to be
        looked at (the caller passes ~3.2 x the largest defect frequency).

    Returns one `Band` per row of `spec`. Raises ValueError when no band is wide enough.
    """
    c, half = spec.shape
    df = fs / n
    min_bins = int(np.ceil(min_width_hz / df))
    if min_bins > half:
        raise ValueError(f"a {min_width_hz:.0f} Hz band does not fit below Nyquist ({fs / 2:.0f} Hz)")
    best_k = np.full(c, -np.inf)
    best = [(0.0, 0, half)] * c
    for level, count in _band_counts(half, min_bins):
        width = half // count
        bands = spec[:, : count * width].reshape(c, count, width)
        env = np.fft.ifft(bands, axis=-1)  # critically sampled complex envelope of each band
        p = env.real**2 + env.imag**2
        sk = (p**2).mean(axis=-1) / (p.mean(axis=-1) ** 2 + _EPS) - 2.0  # (c, count)
        j = sk.argmax(axis=-1)
        value = sk[np.arange(c), j]
        for row in np.nonzero(value > best_k)[0]:
            best_k[row] = value[row]
            best[row] = (level, int(j[row]) * width, width)
    return [Band(start * df, (start + width) * df, float(k), level, start, width)
            for k, (level, start, width) in zip(best_k, best)]


def squared_envelope_spectrum(spec: np.ndarray, band: Band) -> np.ndarray:
    """Amplitude spectrum of the squared envelope of one band (Randall & Antoni 2011, sec. 3).

    `spec` : one whitened one-sided spectrum, shape (n // 2,). The band's bins are shifted to
    baseband and zero-padded to twice their count, so |c|^2 (whose spectrum is twice as wide
    as c's) is not aliased. Returns shape (width_bins,): bin j is j * fs / n Hz, the same
    resolution as the raw spectrum; frequencies up to the band width are covered.
    """
    w = band.width_bins
    padded = np.zeros(2 * w, dtype=complex)
    padded[:w] = spec[band.start_bin : band.start_bin + w]
    env = np.fft.ifft(padded)
    sq = env.real**2 + env.imag**2
    es = np.abs(np.fft.rfft(sq - sq.mean()))[:w]
    return es
