"""Condition features of one window of raw samples, in pure numpy.

Waveform channels carry acceleration in g, temperature channels degrees C. Every
waveform channel yields, in this order:

==========================  ============================================================
``rms_g``                   AC RMS (mean removed, so gravity on a vertical axis does not
                            count as vibration)
``peak_g``                  max ``|x - mean|``
``crest_factor``            peak / RMS (sqrt(2) for a sine; impacts raise it)
``kurtosis``                Pearson, m4 / m2**2 (3 for Gaussian, 1.5 for a sine)
``skewness``                m3 / m2**1.5
``band_<lo>_<hi>_g2``       mean square of acceleration in [lo, hi) Hz, g**2 (see below)
``velocity_rms_mm_s``       RMS vibration velocity over `velocity_band`, mm/s: the quantity
                            ISO 10816 / 20816 zones are written in
``envelope_rms_g``          AC RMS of the Hilbert envelope of the signal band-passed to
                            `envelope_band` (bearing impacts at BPFO/BPFI modulate it)
==========================  ============================================================

Temperature channels are slow, so they get only ``mean_c`` and ``slope_c_per_min``
(least-squares slope over the window).

A constant waveform has no shape: its crest factor is 0, kurtosis 3 and skewness 0
(the values of "nothing unusual"), never NaN.

Spectral scaling. Band energies and velocity come from one rfft of the mean-removed,
Hann-windowed (periodic) signal. Bin k carries the mean square
``c_k * |X_k|**2 / (n * sum(w**2))`` with ``c_k = 2`` for bins that stand for a positive
and a negative frequency (1 for DC and Nyquist). Dividing by ``sum(w**2)`` (the window's
noise power) rather than ``sum(w)**2`` makes the sum over bins equal to the signal's mean
square (Parseval) for broadband and tonal signals alike, so a sine of amplitude A in a
band reads A**2 / 2 there. The Hann taper keeps leakage from strong low-frequency
content (slow drift, unbalance at a few Hz) out of the bands and out of the velocity
integration, which weights low frequencies by 1/f**2.

Velocity is acceleration (g * 9.80665 m/s**2) integrated in the frequency domain: each bin
in `velocity_band` is divided by 2*pi*f (the magnitude of j*2*pi*f; the phase does not
change a mean square), bins outside the band are dropped.

The envelope uses the unwindowed spectrum (a taper would itself modulate the envelope):
bins outside `envelope_band` are zeroed, the positive bins doubled, and an inverse FFT
gives the analytic signal whose magnitude is the envelope (computed on the band shifted
down to 0 Hz, which leaves the magnitude unchanged and allows a shorter inverse FFT).
Its mean duplicates the band energy; its fluctuation (the AC RMS reported) is what
periodic impacts add.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.feature_rules import (  # noqa: F401 (re-exported: the rules every FeatureSpec builder shares)
    DEFAULT_BANDS, _check_band, band_name, default_bands, default_envelope_band, temperature_channels,
)

G = 9.80665  # m/s**2 per g (standard gravity)

WAVEFORM_FEATURES = ("rms_g", "peak_g", "crest_factor", "kurtosis", "skewness")
TEMPERATURE_FEATURES = ("mean_c", "slope_c_per_min")
MIN_SAMPLES = 8


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute for one sensor.

    Parameters
    ----------
    rate : float
        Sample rate, Hz.
    channels : tuple of str
        Column names of a window, in column order.
    temperature_channels : tuple of str
        Subset of `channels` that are slow temperatures (mean and slope only).
    bands : tuple of (lo, hi)
        Hz bands for band energies; empty means `default_bands(rate)`. Every band must
        lie below Nyquist (rate / 2).
    velocity_band : (lo, hi)
        Hz band of the velocity RMS (ISO 10816 uses 10-1000 Hz); the upper edge is cut
        at Nyquist for slow sample rates.
    envelope_band : (lo, hi) or None
        Hz band demodulated for the envelope; None means `default_envelope_band(rate)`.

    Examples
    --------
    >>> spec = FeatureSpec(1000.0, ("ax", "temp"), ("temp",))
    >>> spec.bands, spec.velocity_band, spec.envelope_band
    (((10.0, 100.0), (100.0, 500.0)), (10.0, 500.0), (250.0, 450.0))
    """

    rate: float
    channels: tuple[str, ...]
    temperature_channels: tuple[str, ...] = ()
    bands: tuple[tuple[float, float], ...] = ()
    velocity_band: tuple[float, float] = (10.0, 1000.0)
    envelope_band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 Hz, got {self.rate}")
        set_("rate", float(self.rate))
        set_("channels", tuple(self.channels))
        set_("temperature_channels", tuple(self.temperature_channels))
        if not self.channels:
            raise ValueError("channels must not be empty")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {self.channels}")
        bad = [c for c in self.channels if not c or "." in c]
        if bad:
            raise ValueError(f"channel names must be non-empty and contain no '.', got {bad}")
        unknown = [c for c in self.temperature_channels if c not in self.channels]
        if unknown:
            raise ValueError(f"temperature_channels {unknown} are not in channels {self.channels}")
        nyquist = self.rate / 2.0
        # Spectral settings only bind when there is a waveform to analyse: a temperature-only
        # sensor polled at 1 Hz must not fail over a velocity band it never computes.
        check = bool(self.waveform_channels)
        bands = tuple((float(lo), float(hi)) for lo, hi in self.bands) or default_bands(self.rate)
        for lo, hi in bands:
            if check:
                _check_band("band", lo, hi, nyquist)
        set_("bands", bands)
        lo, hi = float(self.velocity_band[0]), min(float(self.velocity_band[1]), nyquist)
        if check and not 0.0 < lo < hi:
            raise ValueError(
                f"velocity_band ({lo:g}, {hi:g}) Hz must satisfy 0 < lo < hi <= Nyquist ({nyquist:g}); "
                f"a waveform sampled at {self.rate:g} Hz is too slow for it"
            )
        set_("velocity_band", (lo, hi))
        lo, hi = (float(v) for v in (self.envelope_band or default_envelope_band(self.rate)))
        if check:
            _check_band("envelope_band", lo, hi, nyquist)
        set_("envelope_band", (lo, hi))

    @classmethod
    def for_channels(cls, rate: float, channels: tuple[str, ...], **kwargs) -> "FeatureSpec":
        """A spec with the configuration's defaults: channels named ``temp*`` are temperatures
        (`temperature_channels`), bands are `default_bands(rate)`, so a model trained on it computes
        what a sensor configured with only `sample_rate` and `channels` computes.

        >>> FeatureSpec.for_channels(3200, ("ax", "ay", "az", "temp")).temperature_channels
        ('temp',)
        """
        return cls(rate, tuple(channels), temperature_channels(channels), **kwargs)

    @classmethod
    def of_sensor(cls, sensor_cfg) -> "FeatureSpec":
        """The spec a configured sensor's pipeline computes (agent/config_models.SensorConfig);
        bundles and training use the same one, so their feature lists match."""
        return cls(float(sensor_cfg.sample_rate), tuple(sensor_cfg.channels),
                   tuple(sensor_cfg.temperature_channels), tuple(tuple(b) for b in sensor_cfg.bands))

    @property
    def waveform_channels(self) -> tuple[str, ...]:
        return tuple(c for c in self.channels if c not in self.temperature_channels)

    def waveform_features(self) -> tuple[str, ...]:
        bands = tuple(band_name(lo, hi) for lo, hi in self.bands)
        return WAVEFORM_FEATURES + bands + ("velocity_rms_mm_s", "envelope_rms_g")


def feature_names(spec: FeatureSpec) -> list[str]:
    """Names of `extract`'s keys and `extract_batch`'s columns: channels in spec order,
    features in the order of the module docstring.

    >>> feature_names(FeatureSpec(1000.0, ("ax", "temp"), ("temp",)))[:3]
    ['ax.rms_g', 'ax.peak_g', 'ax.crest_factor']
    >>> feature_names(FeatureSpec(1000.0, ("ax", "temp"), ("temp",)))[-2:]
    ['temp.mean_c', 'temp.slope_c_per_min']
    """
    wave = spec.waveform_features()
    names = []
    for channel in spec.channels:
        feats = TEMPERATURE_FEATURES if channel in spec.temperature_channels else wave
        names.extend(f"{channel}.{f}" for f in feats)
    return names


@dataclass(frozen=True)
class _Plan:
    """Everything about the spectra that depends only on (spec, n): computed once."""

    band_matrix: np.ndarray  # (n_bins, n_bands): per-bin mean square -> band mean square
    velocity_weights: np.ndarray  # (n_bins,): per-bin g**2 -> (mm/s)**2
    envelope_bins: tuple[int, int]  # [lo, hi) rfft bins of the envelope band
    envelope_len: int  # inverse FFT length for the envelope
    columns: np.ndarray  # (n_features,) index into the concatenated per-kind results
    waveform_idx: np.ndarray
    temperature_idx: np.ndarray


@lru_cache(maxsize=32)
def _plan(spec: FeatureSpec, n: int) -> _Plan:
    freqs = np.fft.rfftfreq(n, d=1.0 / spec.rate)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic (see _hann_spectrum)
    bin_weight = np.full(len(freqs), 2.0)
    bin_weight[0] = 1.0
    if n % 2 == 0:
        bin_weight[-1] = 1.0
    bin_scale = bin_weight / (n * np.sum(hann**2))  # |X_k|**2 -> mean square (see module doc)

    nyquist = spec.rate / 2.0
    band_matrix = np.zeros((len(freqs), len(spec.bands)))
    for j, (lo, hi) in enumerate(spec.bands):
        # Half-open [lo, hi), except that a band reaching Nyquist keeps the Nyquist bin.
        inside = (freqs >= lo) & ((freqs < hi) | ((hi >= nyquist) & (freqs <= hi)))
        band_matrix[inside, j] = 1.0
    band_matrix *= bin_scale[:, None]

    vlo, vhi = spec.velocity_band
    in_vel = (freqs >= vlo) & (freqs <= vhi) & (freqs > 0)
    velocity_weights = np.zeros(len(freqs))
    mm_s_per_g = G * 1000.0 / (2.0 * np.pi * freqs[in_vel])
    velocity_weights[in_vel] = bin_scale[in_vel] * mm_s_per_g**2

    elo, ehi = spec.envelope_band
    in_env = np.flatnonzero((freqs >= elo) & (freqs <= ehi) & (freqs > 0))
    if len(in_env):
        envelope_bins = (int(in_env[0]), int(in_env[-1]) + 1)
        envelope_len = min(n, 1 << int(np.ceil(np.log2(2 * len(in_env)))))
    else:  # a window too short to resolve the band: the envelope reads 0
        envelope_bins, envelope_len = (0, 0), 1

    # Results are computed per kind as (w, channels, features); `columns` picks them into
    # spec order from the concatenation [waveform block flattened, temperature block flattened].
    wave_ch, temp_ch = spec.waveform_channels, spec.temperature_channels
    n_wave = len(spec.waveform_features())
    columns = []
    for c in spec.channels:
        if c in temp_ch:
            base = len(wave_ch) * n_wave + temp_ch.index(c) * len(TEMPERATURE_FEATURES)
            columns.extend(range(base, base + len(TEMPERATURE_FEATURES)))
        else:
            base = wave_ch.index(c) * n_wave
            columns.extend(range(base, base + n_wave))
    return _Plan(
        band_matrix=band_matrix,
        velocity_weights=velocity_weights,
        envelope_bins=envelope_bins,
        envelope_len=envelope_len,
        columns=np.array(columns, dtype=np.intp),
        waveform_idx=np.array([spec.channels.index(c) for c in wave_ch], dtype=np.intp),
        temperature_idx=np.array([spec.channels.index(c) for c in temp_ch], dtype=np.intp),
    )


def _hann_spectrum(spectrum: np.ndarray, n: int) -> np.ndarray:
    """rfft of ``x * hann`` from rfft of ``x``: the periodic Hann window is three complex
    exponentials, so windowing is the 3-tap convolution (-1/4, 1/2, -1/4) over bins.
    One FFT instead of two; the neighbours past both ends are conjugate mirror bins."""
    last = -2 if n % 2 == 0 else -1
    ext = np.concatenate(
        [spectrum[..., 1:2].conj(), spectrum, spectrum[..., last:][..., :1].conj()], axis=-1
    )
    return 0.5 * spectrum - 0.25 * (ext[..., :-2] + ext[..., 2:])


def _waveform(x: np.ndarray, plan: _Plan) -> np.ndarray:
    """(w, c, n) acceleration in g -> (w, c, n_waveform_features)."""
    n = x.shape[-1]
    mean = x.mean(axis=-1, keepdims=True)
    d = x - mean
    d2 = d * d
    m2 = d2.mean(axis=-1)
    m3 = (d2 * d).mean(axis=-1)
    m4 = (d2 * d2).mean(axis=-1)
    rms = np.sqrt(m2)
    peak = np.abs(d).max(axis=-1)
    # "Constant" is relative to the level: rounding in the mean leaves ~1e-16 * |mean|.
    flat = rms <= 1e-12 * (1.0 + np.abs(mean[..., 0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        crest = np.where(flat, 0.0, peak / rms)
        kurtosis = np.where(flat, 3.0, m4 / (m2 * m2))
        skewness = np.where(flat, 0.0, m3 / (m2 * np.sqrt(m2)))

    spectrum = np.fft.rfft(d, axis=-1)
    windowed = _hann_spectrum(spectrum, n)
    power = windowed.real**2 + windowed.imag**2  # the plan's matrices turn it into g**2
    bands = power @ plan.band_matrix
    velocity = np.sqrt(power @ plan.velocity_weights)

    # Analytic signal of the band, moved down to start at 0 Hz: the move multiplies it by
    # a unit phasor, so its magnitude (the envelope) is unchanged, and the shorter inverse
    # FFT samples that envelope on a coarser but still alias-free grid (m >= 2 * bins).
    lo, hi = plan.envelope_bins
    m = plan.envelope_len
    analytic = np.fft.ifft(spectrum[..., lo:hi] * (2.0 * m / n), n=m, axis=-1)
    envelope_rms = np.abs(analytic).std(axis=-1)

    if flat.any():
        # Rounding residue of a constant must not read as a spectrum either.
        bands = np.where(flat[..., None], 0.0, bands)
        velocity = np.where(flat, 0.0, velocity)
        envelope_rms = np.where(flat, 0.0, envelope_rms)
        rms = np.where(flat, 0.0, rms)
        peak = np.where(flat, 0.0, peak)
    scalars = np.stack([rms, peak, crest, kurtosis, skewness], axis=-1)
    return np.concatenate([scalars, bands, velocity[..., None], envelope_rms[..., None]], axis=-1)


def _temperature(x: np.ndarray, rate: float) -> np.ndarray:
    """(w, c, n) degrees C -> (w, c, 2): mean and least-squares slope per minute."""
    n = x.shape[-1]
    t = (np.arange(n) - (n - 1) / 2.0) / rate  # centred: slope = sum(t*y) / sum(t*t)
    mean = x.mean(axis=-1)
    slope = (x @ t) / np.dot(t, t) * 60.0
    return np.stack([mean, slope], axis=-1)


def extract_batch(windows: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features of many windows at once, columns in `feature_names(spec)` order.

    Parameters
    ----------
    windows : np.ndarray
        Shape (w, n, len(spec.channels)); n >= 8 samples per window.
    spec : FeatureSpec

    Returns
    -------
    np.ndarray
        Shape (w, len(feature_names(spec))), float64; finite for finite input.

    Examples
    --------
    >>> spec = FeatureSpec(3200.0, ("ax",))
    >>> t = np.arange(4096) / 3200.0
    >>> sine = 2.0 * np.sin(2 * np.pi * 50.0 * t)
    >>> noise = np.random.default_rng(0).normal(0.0, 1.0, 4096)
    >>> rows = extract_batch(np.stack([sine, noise])[:, :, None], spec)
    >>> rows.shape
    (2, 11)
    >>> np.round(rows[:, 0], 2).tolist()  # rms_g: 2 / sqrt(2) for the sine, 1 for the noise
    [1.41, 1.0]
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != len(spec.channels):
        raise ValueError(f"expected windows of shape (w, n, {len(spec.channels)}), got {x.shape}")
    w, n, _ = x.shape
    if n < MIN_SAMPLES:
        raise ValueError(f"a window needs at least {MIN_SAMPLES} samples, got {n}")
    plan = _plan(spec, n)
    # Channels-major so every FFT and reduction runs along contiguous memory.
    parts = []
    if len(plan.waveform_idx):
        wave = np.ascontiguousarray(x[:, :, plan.waveform_idx].transpose(0, 2, 1))
        parts.append(_waveform(wave, plan).reshape(w, -1))
    if len(plan.temperature_idx):
        temp = np.ascontiguousarray(x[:, :, plan.temperature_idx].transpose(0, 2, 1))
        parts.append(_temperature(temp, spec.rate).reshape(w, -1))
    return np.concatenate(parts, axis=1)[:, plan.columns]


def extract(window: np.ndarray, spec: FeatureSpec) -> dict[str, float]:
    """Features of one (n, len(spec.channels)) window as ``{"<channel>.<feature>": float}``.

    Examples
    --------
    >>> spec = FeatureSpec(3200.0, ("ax", "temp"), ("temp",))
    >>> t = np.arange(3200) / 3200.0
    >>> window = np.column_stack([
    ...     1.0 + 0.5 * np.sqrt(2) * np.sin(2 * np.pi * 160.0 * t),  # gravity + 0.5 g RMS
    ...     40.0 + 0.5 * t,                                          # warming 30 C/min
    ... ])
    >>> f = extract(window, spec)
    >>> round(f["ax.rms_g"], 6), round(f["ax.crest_factor"], 4), round(f["ax.kurtosis"], 4)
    (0.5, 1.4142, 1.5)
    >>> round(f["ax.band_100_500_g2"], 4)  # all of the sine's mean square, A**2 / 2
    0.25
    >>> round(f["ax.velocity_rms_mm_s"], 1)  # 0.5 g * 9.80665 / (2 pi 160 Hz), mm/s
    4.9
    >>> round(f["temp.mean_c"], 2), round(f["temp.slope_c_per_min"], 3)
    (40.25, 30.0)
    """
    x = np.asarray(window, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a window of shape (n, {len(spec.channels)}), got {x.shape}")
    row = extract_batch(x[None], spec)[0]
    return dict(zip(feature_names(spec), row.tolist()))
