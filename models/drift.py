"""Drift of an adapting baseline: how far the machine has moved from what was learned.

After learning, a model with `adapt_half_life_s` keeps learning healthy-looking windows so the
baseline follows slow, healthy change (seasons, wear-in). The same mechanism could absorb a
fault that grows slowly enough for every window to stay below the warning level. So a frozen
copy of the baseline as it was when learning ended (the *reference*) scores every window too,
and its calibrated score stream is watched:

- `level`: an exponentially weighted mean (half-life `half_life` windows) of the reference's
  calibrated score: 0 while the machine looks as it did when learned, towards 1 when it has
  left that envelope for good (0.5 = typically beyond the learned 99.9 % tail);
- `detected`: the Page-Hinkley test (Page 1954; Hinkley 1971) for an increase in the mean of
  that stream, the algorithm of river's `drift.PageHinkley` (mode "up", forgetting factor
  `alpha`). river itself is not imported: `import river.drift` adds ~88 MiB RSS to the daemon
  (measured: 26 -> 114 MiB), this is 20 lines. tests/test_baseline_model.py checks both agree.

The drift is *large* (an alert of kind `drift`) when detected and `level` >= `large_at` (the
agent passes the alarm threshold, 0.9: the machine now typically sits four tails beyond what was
learned); it ends when `level` falls below `clear_below` (the warning threshold). A healthy machine
whose load cycle was longer than the learning period moves the level up and down (measured up to
0.58 on the simulated machine with a 100-window baseline, bench/baseline.py); a slowly growing
fault drives it towards 1 and keeps it there. With adaptation off the baseline cannot drift (the
model itself alerts on any change) and no reference is kept.
"""

from __future__ import annotations

import math


class PageHinkley:
    """Page-Hinkley test for an upward change in the mean of a stream (river's algorithm).

    >>> ph = PageHinkley(min_instances=10, delta=0.01, threshold=2.0)
    >>> [ph.update(0.05) for _ in range(100)].count(True)
    0
    >>> next(i for i in range(100) if ph.update(0.5))  # a step of +0.45 is found within a few values
    4
    """

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.sum = 0.0
        self.min = math.inf

    def update(self, x: float) -> bool:
        """Add one value; True when an upward drift is detected (the test then starts over)."""
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.sum = self.alpha * self.sum + (x - self.mean - self.delta)
        self.min = min(self.min, self.sum)
        if self.n >= self.min_instances and self.sum - self.min > self.threshold:
            self.reset()
            return True
        return False

    def state(self) -> dict:
        return {"n": self.n, "mean": self.mean, "sum": self.sum, "min": None if math.isinf(self.min) else self.min}

    def restore(self, s: dict) -> None:
        self.n, self.mean, self.sum = int(s["n"]), float(s["mean"]), float(s["sum"])
        self.min = math.inf if s["min"] is None else float(s["min"])


class DriftMonitor:
    """Watches the reference baseline's calibrated scores (see module docstring).

    `update(score01, ts)` -> True when the drift has just become large, False when it has just
    ended, None otherwise. Defaults: the level averages ~100 windows (half-life 64); the test
    needs a sustained rise of ~0.3 over ~30 windows (delta 0.05, threshold 5).

    >>> d = DriftMonitor(large_at=0.5, clear_below=0.4)
    >>> [d.update(0.02, t) for t in range(200)].count(None)
    200
    >>> events = [(t, d.update(0.9, t)) for t in range(200, 400)]
    >>> [e for e in events if e[1] is not None]
    [(273, True)]
    >>> d.report()["large"], round(d.report()["level"], 2)
    (True, 0.8)
    """

    def __init__(self, large_at: float = 0.9, clear_below: float = 0.5, half_life: float = 64.0,
                 delta: float = 0.05, threshold: float = 5.0) -> None:
        self.large_at = large_at
        self.clear_below = clear_below
        self.weight = 1.0 - 2.0 ** (-1.0 / half_life)
        self.test = PageHinkley(min_instances=30, delta=delta, threshold=threshold)
        self.confirm_within = int(4 * half_life)  # windows a detection may wait for the level
        self.level = 0.0
        self.detected_at: float | None = None
        self.waiting = 0
        self.large = False

    def update(self, score01: float, ts: float) -> bool | None:
        if not math.isfinite(score01):
            return None
        self.level += self.weight * (score01 - self.level)
        if self.test.update(score01) and self.detected_at is None:
            self.detected_at, self.waiting = ts, 0
        if not self.large and self.detected_at is not None and self.level >= self.large_at:
            self.large = True
            return True
        if self.large and self.level < self.clear_below:
            self.large, self.detected_at = False, None
            return False
        if self.detected_at is not None and not self.large:
            self.waiting += 1
            if self.waiting > self.confirm_within and self.level < self.clear_below:
                self.detected_at = None  # a rise the level never confirmed and has left: forget it
        return None

    def report(self) -> dict:
        """For the status topic: {"level": 0..1, "detected_at": ts | None, "large": bool}."""
        return {"level": round(self.level, 4), "detected_at": self.detected_at, "large": self.large}

    def state(self) -> dict:
        return {**self.report(), "level": self.level, "waiting": self.waiting, "test": self.test.state()}

    def restore(self, s: dict) -> None:
        self.level, self.detected_at, self.large = float(s["level"]), s["detected_at"], bool(s["large"])
        self.waiting = int(s.get("waiting", 0))
        self.test.restore(s["test"])
