"""Low-order analysis: the shaft's own harmonics in the velocity spectrum (imbalance, misalignment,
looseness), after the diagnostic guidelines of ISO 13373-3 and the classic charts.

- Imbalance: a rotating force at 1x, radial, with little 2x and little axial motion [1]_ [2]_.
- Misalignment: 2x high (comparable to or above 1x) and, for angular misalignment, large axial
  1x/2x [1]_ [2]_.
- Mechanical looseness: a long series of shaft harmonics (up to 10x) and half-order lines
  (0.5x, 1.5x, 2.5x) from the truncated, non-linear response of a loose joint [1]_ [2]_.

Amplitudes are velocity RMS in mm/s, the quantity ISO 10816-3 judges severity in: a healthy
machine has 1x too, so these patterns only count once their lines are large in absolute terms
(`min_mm_s`, default the ISO 10816-3 zone B/C boundary of a group 2 rigid machine, 2.8 mm/s).

References
----------
.. [1] ISO 13373-3:2015, Condition monitoring and diagnostics of machines - Vibration condition
   monitoring - Part 3: Guidelines for vibration diagnosis (tables of fault symptoms).
.. [2] J. I. Taylor, "The Vibration Analysis Handbook", VCI, 1994, ch. 3-5; R. B. Randall,
   "Vibration-based Condition Monitoring", Wiley, 2011, sec. 5.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

G_MM_S2 = 9806.65  # 1 g in mm/s^2
HALF_ORDERS = (0.5, 1.5, 2.5)
HARMONICS = 10


@dataclass(frozen=True, slots=True)
class OrderSpectrum:
    """Shaft-order lines of each axis: `shaft_hz` as measured (the 1x peak near the configured
    speed), `harmonics` velocity RMS mm/s at 1x..10x, shape (axes, 10); `halves` at 0.5x, 1.5x,
    2.5x, shape (axes, 3); `floor` the median line-free velocity per bin, shape (axes,);
    `prominence` the 1x peak over the median of the 30 bins around it (summed axes): below ~4 the
    1x line is lost in noise and `shaft_hz` is no measurement."""

    shaft_hz: float
    harmonics: np.ndarray
    halves: np.ndarray
    floor: np.ndarray
    prominence: float


def order_spectrum(x: np.ndarray, fs: float, shaft_hz: float, speed_tolerance: float) -> OrderSpectrum:
    """Velocity RMS (mm/s) at the shaft orders of `x` (shape (axes, n), acceleration in g).

    Hann window; the shaft frequency is refined from the largest 1x peak within
    +-speed_tolerance of `shaft_hz` on the summed axes (parabolic interpolation of the log
    magnitude, Grandke 1983); each order is read as the largest bin within +-1 bin of h * 1x.
    """
    axes, n = x.shape
    win = np.hanning(n)
    df = fs / n
    # Only the bins up to 1 kHz (the floor's band) or the highest order read are needed.
    top = min(n // 2 + 1, int(max(1000.0, (HARMONICS + 1.5) * shaft_hz * (1 + speed_tolerance)) / df) + 3)
    spec = np.abs(np.fft.rfft((x - x.mean(axis=1, keepdims=True)) * win, axis=1)[:, :top]) * (2.0 / win.sum())  # g peak
    f = np.arange(top) * df
    vel = spec * (G_MM_S2 / np.sqrt(2) / (2 * np.pi * np.maximum(f, df)))
    vel[:, 0] = 0.0
    total = vel.sum(axis=0)
    accel = spec.sum(axis=0)
    lo = max(1, int(np.floor(shaft_hz * (1 - speed_tolerance) / df)))
    hi = max(lo + 1, int(np.ceil(shaft_hz * (1 + speed_tolerance) / df)))
    k = lo + int(np.argmax(total[lo : hi + 1]))
    f1 = shaft_hz
    if 0 < k < len(total) - 1 and total[k] > 0:
        a, b, c = np.log(np.maximum(total[k - 1 : k + 2], 1e-15))
        denom = a - 2 * b + c
        delta = 0.5 * (a - c) / denom if denom < 0 else 0.0
        f1 = float(np.clip((k + delta) * df, shaft_hz * (1 - speed_tolerance), shaft_hz * (1 + speed_tolerance)))

    around = accel[max(1, k - 15) : k + 16]
    prominence = float(accel[k] / (np.median(around) + 1e-15))

    def lines(orders: np.ndarray) -> np.ndarray:
        pos = orders * f1 / df
        idx = np.clip(np.rint(pos).astype(int), 1, vel.shape[1] - 2)
        near = np.stack([vel[:, idx - 1], vel[:, idx], vel[:, idx + 1]])
        return np.where(pos + 1 < vel.shape[1], near.max(axis=0), 0.0)

    band = vel[:, max(1, int(10 / df)) : max(2, int(1000 / df))]
    floor = np.median(band, axis=1) if band.size else np.zeros(axes)
    return OrderSpectrum(f1, lines(np.arange(1, HARMONICS + 1, dtype=float)), lines(np.array(HALF_ORDERS)), floor, prominence)


def shaft_faults(orders: OrderSpectrum, radial: np.ndarray, axial: int | None, min_mm_s: float) -> dict[str, tuple[float, dict]]:
    """Evidence for imbalance, misalignment and looseness: {fault: (strength 0..1, evidence)}.

    `radial`: indexes of the radial axes in `orders`; `axial`: index of the axial axis or None
    (then misalignment is judged on 2x alone). A strength of 0 means the pattern is absent or its
    lines are below `min_mm_s`; 1 means every rule of the pattern holds with a wide margin.
    """
    h = orders.harmonics[radial].max(axis=0)  # worst radial axis per order
    halves = orders.halves[radial].max(axis=0)
    floor = float(orders.floor[radial].max()) + 1e-9
    x1, x2 = float(h[0]), float(h[1])
    energy = float(np.sum(h**2) + np.sum(halves**2)) + 1e-12
    ax1 = ax2 = 0.0
    if axial is not None:
        ax1, ax2 = float(orders.harmonics[axial, 0]), float(orders.harmonics[axial, 1])
    out: dict[str, tuple[float, dict]] = {}
    size = lambda v: float(np.clip((v / min_mm_s - 1.0) * 2.0, 0.0, 1.0))  # 0 at min_mm_s, 1 at 1.5x it

    share_1x = x1**2 / energy
    axial_ratio = max(ax1, ax2) / (max(x1, x2) + 1e-12) if axial is not None else 0.0
    imbalance = size(x1) * float(np.clip((share_1x - 0.6) / 0.3, 0, 1)) * float(np.clip((0.5 - x2 / (x1 + 1e-12)) / 0.3, 0, 1))
    if axial is not None:
        imbalance *= float(np.clip((0.6 - axial_ratio) / 0.3, 0, 1))
    out["imbalance"] = (imbalance, {"1x_mm_s": round(x1, 3), "2x_mm_s": round(x2, 3), "1x_share": round(share_1x, 3)})

    ratio_21 = x2 / (x1 + 1e-12)
    mis = size(max(x2, ax2)) * float(np.clip((ratio_21 - 0.5) / 0.5, 0, 1))
    if axial is not None:
        mis = max(mis, size(max(ax1, ax2)) * float(np.clip((axial_ratio - 0.5) / 0.5, 0, 1)))
    out["misalignment"] = (mis, {"1x_mm_s": round(x1, 3), "2x_mm_s": round(x2, 3), "2x_over_1x": round(ratio_21, 3),
                                 "axial_over_radial": round(axial_ratio, 3)})

    strong = h[2:] > max(0.2 * x1, 6 * floor)  # 3x..10x
    halves_up = halves > max(0.1 * x1, 6 * floor)
    loose = size(float(np.sqrt(energy))) * float(np.clip((strong.sum() - 2) / 3, 0, 1)) * float(np.clip(halves_up.sum() / 2, 0, 1))
    out["looseness"] = (loose, {"harmonics_3x_10x": int(strong.sum()), "half_orders": int(halves_up.sum()),
                                "1x_mm_s": round(x1, 3)})
    return out
