"""Physical-range check between the driver and the pipeline.

A value outside what the sensor can physically report (a 900 g "acceleration", a -270 C
bearing) is a wiring, framing or firmware fault, not a machine condition: such samples are
counted and dropped, never shown to a model, so they cannot poison a learned baseline; the next
frame passed on says how many were removed (`Frame.rejected`), so the windows that span the gap
are not learned either.
Non-finite values are already dropped by the protocol parsers; this check catches them
again for sources that do not parse text.
"""

from __future__ import annotations

import numpy as np

from agent.records import Frame

# Defaults by kind of channel: industrial accelerometers top out at +-500 g; temperature
# sensors on machines read between -60 and 300 C.
ACCEL_LIMITS = (-500.0, 500.0)
TEMP_LIMITS = (-60.0, 300.0)


class PhysicalRange:
    """Drops samples (rows) with any value outside its channel's limits.

    >>> r = PhysicalRange(("ax", "temp"), temperature_channels=("temp",))
    >>> f = Frame("s", 0.0, ("ax", "temp"), np.array([[0.1, 40.0], [900.0, 40.0], [0.2, np.nan]]))
    >>> out = r.filter(f); out.samples.tolist(), out.rejected, r.dropped
    ([[0.1, 40.0]], 2, 2)
    """

    def __init__(self, channels, temperature_channels=()) -> None:
        limits = [TEMP_LIMITS if ch in temperature_channels else ACCEL_LIMITS for ch in channels]
        self._lo = np.array([lo for lo, _ in limits], dtype=float)
        self._hi = np.array([hi for _, hi in limits], dtype=float)
        self.dropped = 0
        self._carry = 0  # rejected samples of frames dropped whole, reported with the next frame

    def filter(self, frame: Frame) -> Frame | None:
        x = frame.samples
        ok = np.all((x >= self._lo) & (x <= self._hi), axis=1)  # NaN compares False: dropped
        if ok.all() and not self._carry:
            return frame
        bad = int((~ok).sum())
        self.dropped += bad
        if bad == len(x):
            self._carry += bad
            return None
        rejected, self._carry = self._carry + bad + frame.rejected, 0
        return Frame(frame.sensor, frame.t_end, frame.channels, x[ok], rejected)
