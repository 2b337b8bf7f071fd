"""A naive, per-sample, pure-Python version of the sensor pipeline: a REFERENCE BASELINE ONLY.

This is what the agent would look like written the obvious way, without numpy: every line
parsed with ``split`` and ``float()``, samples appended to per-channel lists, moments as
Python loops, spectra from a textbook iterative radix-2 FFT, the Mahalanobis detector with
list-of-lists matrices (Gauss-Jordan inverse). It computes the SAME features as
models/features.py (same windowing, Hann scaling, bands, velocity, envelope; bench/performance.py
checks the values agree) and the same detector, calibration and N-of-M policy as
models/gaussian.py, models/streaming.py and agent/policy.py, so bench/performance.py can report
how much the vectorized pipeline gains over it. It is deliberately "fair naive": it uses an
O(n log n) FFT (a per-sample DFT would be absurdly slow) and the same one-FFT Hann trick as the
agent, so the comparison is implementation (Python loops vs numpy), not algorithm.

Nothing in the agent imports this file; do not use it for anything but the benchmark.

>>> p = NaivePipeline(rate=3200.0, size=64, hop=32, learn_seconds=1.0)
>>> p.feed(b"0.1,0.2,1.0,40.0\\n" * 100, t_end=1.0)
100
>>> p.windows
2
"""

from __future__ import annotations

import cmath
import math
import re
from collections import deque

G = 9.80665
_LOG_FEATURE = re.compile(r"rms|peak|band_|kurtosis|crest|energy|envelope|velocity|p2p|std")
_Z_CLIP = 1e6


# -- spectra --------------------------------------------------------------------------------
_TWIDDLES: dict[int, list[complex]] = {}


def fft(values: list) -> list[complex]:
    """Iterative radix-2 Cooley-Tukey FFT of a power-of-two length list (complex or real).

    >>> [round(abs(v), 6) for v in fft([1.0, 0.0, -1.0, 0.0])]
    [0.0, 2.0, 0.0, 2.0]
    """
    a = [complex(v) for v in values]
    n = len(a)
    if n & (n - 1):
        raise ValueError(f"the naive FFT needs a power-of-two length, got {n}")
    j = 0
    for i in range(1, n):  # bit-reversal permutation
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            a[i], a[j] = a[j], a[i]
    length = 2
    while length <= n:
        half = length >> 1
        tw = _TWIDDLES.get(length)
        if tw is None:
            tw = _TWIDDLES[length] = [cmath.exp(-2j * math.pi * k / length) for k in range(half)]
        for start in range(0, n, length):
            for k in range(half):
                u = a[start + k]
                v = a[start + k + half] * tw[k]
                a[start + k] = u + v
                a[start + k + half] = u - v
        length <<= 1
    return a


def ifft(values: list[complex], n: int) -> list[complex]:
    """Inverse FFT of `values` zero-padded (or cut) to length n, numpy's normalisation."""
    padded = (list(values) + [0j] * n)[:n]
    out = fft([v.conjugate() for v in padded])
    return [v.conjugate() / n for v in out]


# -- features -------------------------------------------------------------------------------
def default_bands(rate: float) -> list[tuple[float, float]]:
    nyquist = rate / 2.0
    edges = [e for e in (10.0, 100.0, 500.0, 1000.0) if e < nyquist] + [nyquist]
    return list(zip(edges[:-1], edges[1:]))


def waveform_features(x: list[float], rate: float, bands, velocity_band, envelope_band) -> list[float]:
    """rms, peak, crest, kurtosis, skewness, band mean squares, velocity RMS, envelope RMS."""
    n = len(x)
    mean = 0.0
    for v in x:
        mean += v
    mean /= n
    d = [v - mean for v in x]
    s2 = s3 = s4 = 0.0
    peak = 0.0
    for v in d:
        v2 = v * v
        s2 += v2
        s3 += v2 * v
        s4 += v2 * v2
        if abs(v) > peak:
            peak = abs(v)
    m2, m3, m4 = s2 / n, s3 / n, s4 / n
    rms = math.sqrt(m2)
    flat = rms <= 1e-12 * (1.0 + abs(mean))
    if flat:
        return [0.0, 0.0, 0.0, 3.0, 0.0] + [0.0] * len(bands) + [0.0, 0.0]
    crest, kurtosis, skewness = peak / rms, m4 / (m2 * m2), m3 / (m2 * math.sqrt(m2))

    spectrum = fft(d)[: n // 2 + 1]
    # Hann window as the 3-tap spectral convolution (as models/features.py does).
    last = n // 2 - 1 if n % 2 == 0 else n // 2
    ext = [spectrum[1].conjugate()] + spectrum + [spectrum[last].conjugate()]
    hann_power_sum = 3.0 * n / 8.0  # sum(w**2) of the periodic Hann window
    df = rate / n
    nyquist = rate / 2.0
    band_ms = [0.0] * len(bands)
    vel_ms = 0.0
    vlo, vhi = velocity_band
    for k in range(len(spectrum)):
        w = 0.5 * spectrum[k] - 0.25 * (ext[k] + ext[k + 2])
        weight = 1.0 if k == 0 or (n % 2 == 0 and k == n // 2) else 2.0
        ms = weight * (w.real * w.real + w.imag * w.imag) / (n * hann_power_sum)
        f = k * df
        for j, (lo, hi) in enumerate(bands):
            if f >= lo and (f < hi or (hi >= nyquist and f <= hi)):
                band_ms[j] += ms
        if f > 0 and vlo <= f <= vhi:
            mm_s = G * 1000.0 / (2.0 * math.pi * f)
            vel_ms += ms * mm_s * mm_s

    elo, ehi = envelope_band
    inside = [k for k in range(len(spectrum)) if k > 0 and elo <= k * df <= ehi]
    envelope_rms = 0.0
    if inside:
        lo, hi = inside[0], inside[-1] + 1
        m = min(n, 1 << math.ceil(math.log2(2 * len(inside))))
        analytic = ifft([c * (2.0 * m / n) for c in spectrum[lo:hi]], m)
        mags = [abs(c) for c in analytic]
        mu = sum(mags) / m
        envelope_rms = math.sqrt(sum((v - mu) ** 2 for v in mags) / m)
    return [rms, peak, crest, kurtosis, skewness, *band_ms, math.sqrt(vel_ms), envelope_rms]


def temperature_features(x: list[float], rate: float) -> list[float]:
    n = len(x)
    mean = sum(x) / n
    sty = stt = 0.0
    for i, v in enumerate(x):
        t = (i - (n - 1) / 2.0) / rate
        sty += t * v
        stt += t * t
    return [mean, sty / stt * 60.0]


# -- detector -------------------------------------------------------------------------------
def invert(a: list[list[float]]) -> list[list[float]]:
    """Gauss-Jordan inverse with partial pivoting.

    >>> invert([[2.0, 0.0], [0.0, 4.0]])
    [[0.5, 0.0], [0.0, 0.25]]
    """
    n = len(a)
    m = [row[:] + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        p = m[col][col]
        row = m[col] = [v / p for v in m[col]]
        for r in range(n):
            if r != col:
                f = m[r][col]
                if f:
                    mr = m[r]
                    m[r] = [mr[j] - f * row[j] for j in range(2 * n)]
    return [r[n:] for r in m]


class NaiveGaussian:
    """models/gaussian.py with Python lists: log features, EW mean/covariance, shrunk correlation."""

    def __init__(self, keys: list[str], half_life: float | None = None, shrinkage: float = 0.1) -> None:
        self.keys = keys
        self.log = [bool(_LOG_FEATURE.search(k.rsplit(".", 1)[-1])) for k in keys]
        self.half_life = half_life
        self.shrinkage = shrinkage
        d = len(keys)
        self.n = 0
        self.mean = [0.0] * d
        self.cov = [[0.0] * d for _ in range(d)]
        self.precision = None

    def transform(self, x: list[float]) -> list[float]:
        return [math.log(max(v, 1e-12)) if lg else v for v, lg in zip(x, self.log)]

    def learn(self, x: list[float]) -> None:
        v = self.transform(x)
        self.n += 1
        w = 1.0 / self.n
        if self.half_life:
            w = max(w, 1.0 - 2.0 ** (-1.0 / self.half_life))
        delta = [a - b for a, b in zip(v, self.mean)]
        self.mean = [m + w * dl for m, dl in zip(self.mean, delta)]
        for i, row in enumerate(self.cov):
            di = delta[i]
            for j in range(len(row)):
                row[j] = (1.0 - w) * (row[j] + w * di * delta[j])
        self.precision = None

    def score(self, x: list[float]) -> tuple[float, list[float]]:
        """(squared Mahalanobis / d, |z| per feature)."""
        d = len(self.keys)
        if self.n < 2:
            return 0.0, [0.0] * d
        v = self.transform(x)
        std = []
        for i in range(d):
            floor = 1e-4 if self.log[i] else 1e-4 * (1.0 + self.mean[i] ** 2)
            std.append(math.sqrt(max(self.cov[i][i], floor)))
        z = [max(-_Z_CLIP, min(_Z_CLIP, (v[i] - self.mean[i]) / std[i])) for i in range(d)]
        if self.precision is None:
            n_eff = self.n if not self.half_life else min(self.n, self.half_life / math.log(2.0))
            delta = min(1.0, max(self.shrinkage, d / (n_eff + d)))
            shrunk = [
                [1.0 if i == j else (1.0 - delta) * self.cov[i][j] / (std[i] * std[j]) for j in range(d)]
                for i in range(d)
            ]
            self.precision = invert(shrunk)
        q = 0.0
        for i in range(d):
            row, acc = self.precision[i], 0.0
            for j in range(d):
                acc += row[j] * z[j]
            q += z[i] * acc
        return max(0.0, q) / d, [abs(v) for v in z]


def quantile(values: list[float], q: float) -> float:
    """numpy's default (linear) quantile."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# -- the pipeline ---------------------------------------------------------------------------
class NaivePipeline:
    """Bytes of the `lines` protocol in, alerts out; the agent's default gaussian pipeline.

    `feed(data, t_end)` parses every complete line, windows the samples, and for every window
    computes the features, scores them (learning first, then calibrated scoring with guarded
    adaptation, as models/streaming.py), applies the N-of-M policy and keeps per-feature
    aggregates. Returns the number of samples parsed.
    """

    def __init__(
        self, rate: float, size: int, hop: int, channels=("ax", "ay", "az", "temp"), temperature_channels=("temp",),
        learn_seconds: float = 60.0, adapt_half_life_s: float | None = 86400.0, warning: float = 0.5,
        alarm: float = 0.9, debounce_n: int = 3, debounce_m: int = 5, hysteresis: float = 0.1,
    ) -> None:
        self.rate, self.size, self.hop = float(rate), size, hop
        self.channels = list(channels)
        self.temps = set(temperature_channels)
        self.bands = default_bands(self.rate)
        self.velocity_band = (10.0, min(1000.0, self.rate / 2.0))
        self.envelope_band = (self.rate / 4.0, 0.45 * self.rate)
        wave = ["rms_g", "peak_g", "crest_factor", "kurtosis", "skewness",
                *(f"band_{lo:g}_{hi:g}_g2".replace(".", "p") for lo, hi in self.bands),
                "velocity_rms_mm_s", "envelope_rms_g"]
        self.keys = [f"{c}.{f}" for c in self.channels
                     for f in (("mean_c", "slope_c_per_min") if c in self.temps else wave)]
        self.buffers: list[list[float]] = [[] for _ in self.channels]
        self.tail = b""
        self.samples = 0
        self.windows = 0
        self.bad_lines = 0
        self.detector = NaiveGaussian(self.keys)
        self.learn_seconds, self.adapt_half_life_s = learn_seconds, adapt_half_life_s
        self.t0: float | None = None
        self.n_learned = 0
        self.pool: list[float] = []
        self.calibration: tuple[float, float] | None = None  # (median, tail)
        self.ready = False
        self.thresholds = {"warning": warning, "alarm": alarm}
        self.debounce_n, self.hysteresis = debounce_n, hysteresis
        self.recent: deque[float] = deque(maxlen=debounce_m)
        self.level = "clear"
        self.alerts: list[tuple[float, str, float]] = []
        self.aggregate: list[list[float]] = [[math.inf, -math.inf, 0.0] for _ in self.keys]
        self.last_score = 0.0

    # -- bytes -> samples -> windows --------------------------------------------------------
    def feed(self, data: bytes, t_end: float) -> int:
        buf = self.tail + data
        lines = buf.split(b"\n")
        self.tail = lines.pop()
        parsed = 0
        n_ch = len(self.channels)
        for line in lines:
            fields = line.split(b",")
            if len(fields) != n_ch:
                self.bad_lines += 1
                continue
            try:
                row = [float(f) for f in fields]
            except ValueError:
                self.bad_lines += 1
                continue
            for buffer, v in zip(self.buffers, row):
                buffer.append(v)
            parsed += 1
            if len(self.buffers[0]) == self.size:
                ts = t_end - (len(lines) - parsed) / self.rate
                self.window(ts)
                for b in self.buffers:
                    del b[: self.hop]
        self.samples += parsed
        return parsed

    def window(self, ts: float) -> None:
        self.windows += 1
        x: list[float] = []
        for c, buffer in zip(self.channels, self.buffers):
            if c in self.temps:
                x += temperature_features(buffer, self.rate)
            else:
                x += waveform_features(buffer, self.rate, self.bands, self.velocity_band, self.envelope_band)
        self.handle(x, ts)

    # -- features -> score -> alert ----------------------------------------------------------
    def calibrate(self, raw: float) -> float:
        if self.calibration is None:
            return 0.0
        median, tail = self.calibration
        width = max(tail - median, 1e-12 + 1e-9 * abs(median))
        t = max(raw - median, 0.0) / width
        return 1.0 - 2.0 ** -(t ** (math.log(math.log2(10.0)) / math.log(4.0)))

    def handle(self, x: list[float], ts: float) -> None:
        if self.t0 is None:
            self.t0 = ts
        if not self.ready and ts - self.t0 >= self.learn_seconds and self.n_learned >= 30:
            self.calibration = (quantile(self.pool, 0.5), quantile(self.pool, 0.999))
            self.ready = True
            if self.adapt_half_life_s:
                self.detector.half_life = self.adapt_half_life_s * self.n_learned / max(ts - self.t0, 1e-9)
        raw, contrib = self.detector.score(x)
        score = self.calibrate(raw)
        reason = sorted(zip(contrib, self.keys), reverse=True)[:3]  # noqa: F841 (the alert's reason)
        if not self.ready:
            if ts - self.t0 >= 0.2 * self.learn_seconds:
                self.pool.append(raw)
            self.detector.learn(x)
            self.n_learned += 1
        elif self.adapt_half_life_s and score < 0.5:
            self.detector.learn(x)
        self.last_score = score
        for agg, v in zip(self.aggregate, x):
            agg[0], agg[1], agg[2] = min(agg[0], v), max(agg[1], v), agg[2] + v
        if self.ready:
            self.policy(score, ts)

    def policy(self, score: float, ts: float) -> None:
        self.recent.append(score)
        rank = {"clear": 0, "warning": 1, "alarm": 2}
        raised = "clear"
        for level in ("warning", "alarm"):
            if sum(1 for v in self.recent if v >= self.thresholds[level]) >= self.debounce_n:
                raised = level
        new = self.level
        if rank[raised] > rank[self.level]:
            new = raised
        elif self.level != "clear":
            below = self.thresholds[self.level] - self.hysteresis
            if sum(1 for v in self.recent if v < below) >= self.debounce_n:
                held = sum(1 for v in self.recent if v >= self.thresholds["warning"] - self.hysteresis)
                new = "warning" if self.level == "alarm" and held >= self.debounce_n else "clear"
        if new != self.level:
            self.level = new
            self.alerts.append((ts, new, score))
