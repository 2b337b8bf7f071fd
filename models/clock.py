"""Learning time counted on observed data, not on the distance between two wall-clock readings.

A gateway without a real-time clock boots in 1970 or last week and is stepped by NTP minutes to
weeks later; an agent is stopped for maintenance in the middle of learning. If learning ended at
`ts - t0 >= learn_seconds`, a forward step or a long stop would end it at once, on a baseline of a
handful of windows. `ObservedClock` adds up only the steps that look like the data's own cadence:
a step back, or one longer than `gap_factor` times the typical step (a gap, a restart, a clock
step forward), counts as one typical step. On regular data it equals `ts - t0` exactly.

>>> c = ObservedClock()
>>> [c.advance(t) for t in (100.0, 104.0, 108.0)]
[0.0, 4.0, 8.0]
>>> c.advance(86400.0 * 30), c.advance(86400.0 * 30 + 4.0)  # NTP steps a month forward
(12.0, 16.0)
>>> c.advance(50.0)  # and back
20.0
"""

from __future__ import annotations


class ObservedClock:
    """Seconds of data observed so far (see module docstring)."""

    def __init__(self, gap_factor: float = 10.0) -> None:
        self.gap_factor = gap_factor
        self.observed = 0.0
        self.last: float | None = None
        self.typical: float | None = None  # EW mean of the accepted steps

    def advance(self, ts: float) -> float:
        """Account for a record at `ts` (seconds); returns the seconds observed up to it."""
        if self.last is not None:
            step = ts - self.last
            if step <= 0.0 or (self.typical is not None and step > self.gap_factor * self.typical):
                step = self.typical or 0.0  # a clock step or a gap: one ordinary record, no more
            else:
                self.typical = step if self.typical is None else self.typical + 0.1 * (step - self.typical)
            self.observed += step
        self.last = ts
        return self.observed

    def state(self) -> dict:
        return {"observed": self.observed, "last": self.last, "typical": self.typical}

    @classmethod
    def from_state(cls, state: dict | None, last: float | None = None) -> "ObservedClock":
        """Restore; a state saved before this clock existed resumes from `last` with nothing observed."""
        c = cls()
        if state:
            c.observed, c.last, c.typical = float(state["observed"]), state["last"], state["typical"]
        else:
            c.last = last
        return c
