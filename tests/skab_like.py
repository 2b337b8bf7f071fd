"""Synthetic SKAB-like records: 8 channels of a water pump logged at 1 Hz, with known answers.

The channels, their levels and noise follow SKAB's testbed (docs/detectors.md): two vibration
RMS, current, pressure, motor and fluid temperatures, voltage and flow. The healthy part is
stationary except the temperatures, which may drift (a machine warming up); a fault is a step in
one channel (a valve closing: the flow falls by a few percent).
"""

from __future__ import annotations

import numpy as np

CHANNELS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
            "Thermocouple", "Voltage", "Volume Flow RateRMS"]
LEVEL = np.array([0.027, 0.040, 1.0, 0.1, 70.0, 25.0, 230.0, 32.0])
NOISE = np.array([0.0003, 0.0005, 0.25, 0.3, 0.02, 0.01, 8.0, 0.4])


def records(n: int, seed: int = 0, temp_drift: float = 0.0, drift_from: int = 0,
            step_at: int | None = None, channel: str = "Volume Flow RateRMS", step: float = 0.0) -> np.ndarray:
    """(n, 8) rows. `temp_drift` degrees C added to both temperatures linearly from row `drift_from`
    to the last row; `step` (in the channel's units) added to `channel` from row `step_at` on."""
    rng = np.random.default_rng(seed)
    x = LEVEL + NOISE * rng.normal(0.0, 1.0, (n, len(CHANNELS)))
    # Temperatures move slowly (a thermal time constant), not as white noise.
    for c in (4, 5):
        x[:, c] = LEVEL[c] + np.cumsum(rng.normal(0.0, NOISE[c], n)) * 0.05 + NOISE[c] * rng.normal(0, 1, n)
    if temp_drift:
        ramp = np.clip((np.arange(n) - drift_from) / max(n - 1 - drift_from, 1), 0.0, 1.0) * temp_drift
        x[:, 4] += ramp
        x[:, 5] += ramp
    if step_at is not None:
        x[step_at:, CHANNELS.index(channel)] += step
    return x


def write_csv(path, x: np.ndarray) -> None:
    """SKAB's format: `;`-separated, a `datetime` column, one row a second."""
    t0 = np.datetime64("2020-03-09T10:00:00")
    with open(path, "w") as f:
        f.write("datetime;" + ";".join(CHANNELS) + "\n")
        for i, row in enumerate(x):
            stamp = str(t0 + np.timedelta64(i, "s")).replace("T", " ")
            f.write(stamp + ";" + ";".join(f"{v:.6g}" for v in row) + "\n")
