"""One-channel novelty detector: how rare is this value, its level and its volatility, here?

The default for a single stream (a bearing or winding temperature, a pressure, a motor current,
any one-column CSV). Each channel is watched through three causal transforms of its values:

- the **value** itself: "never seen such a value" (a spike, a new level, a drop to zero);
- its short-term **level**, an EWMA with weight `smooth` per record: a shift that single noisy
  values hide;
- its **volatility**, an EWMA (weight `volatility`) of |x_t - x_{t-1}|: noise that grows, or a
  signal that goes much smoother. A sensor stuck at a value it often reads is not news to it:
  the daemon's sensor health reports `stuck` (agent/sensor_health.py).

For each transform the detector keeps the last `history` values, sorted, and turns a new value v
into a **surprise** in decades, -log10 p, where p is how rarely values as extreme as v occurred
(two-sided, the worse side counts):

- inside the body of the history, the conformal p-value p = (#{h >= v} + 1) / (m + 1)
  (Vovk, Gammerman and Shafer 2005, "Algorithmic learning in a random world", ch. 2);
- beyond the k-th most extreme value u (k = `tail`, at most m / 4), a peaks-over-threshold tail:
  the excesses over u are modelled as exponential with scale e, p = (k / (m + 1)) *
  exp(-(v - u) / e), e the mean excess without the `trim` largest (Pickands 1975; the streaming
  use is SPOT, Siffer et al. 2017, KDD), so a value far beyond everything seen gets a finite,
  growing surprise instead of a saturated rank.

A record's surprise is the largest over transforms and channels, minus log10 of their number
(Bonferroni: 6 one-sided tests per channel must not look 6 times as surprising). Then a
**suppression** gate, so an operator gets the first alert of an episode, not a hundred: a surprise
that does not exceed the recent maximum (decaying by `suppress` per record, half-life
ln 2 / suppress records) is multiplied by `quiet`.

The score keeps one meaning across streams, because a surprise is a probability under the
stream's own history: the fixed map `CALIBRATION` gives 0.5 at 10^-2.75 (a value as extreme as
about 1 record in 560 saw, after correction) and 0.9 at 10^-5.5. On the NAB development corpus the
best single threshold for all 31 series lies near that 0.5 (docs/detectors.md, bench/nab.py).

Novelty, not a frozen baseline: the detector keeps learning every record (`novelty = True`), so
a new level that persists becomes known and the alert clears after it has filled a fair share of
the history. That is what makes it right for one-channel streams whose "normal" moves (a daily
cycle, a new set point); a limit that must hold forever belongs in an absolute threshold.

Memory is constant per channel: for each transform a sorted list and a ring of `history` values
(about 1 MB per channel at the default 10,000, measured with tracemalloc); a record costs O(log n) comparisons plus list moves.

Examples
--------
>>> det = RarityDetector()
>>> rng = np.random.default_rng(0)
>>> for v in 40 + rng.normal(0, 0.2, 2000):
...     det.learn({"temp": v}); det.observe({"temp": v})
>>> normal, spike = det.score({"temp": 40.1}), det.score({"temp": 43.0})
>>> normal < 1.0 < 2.5 < spike
True
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np  # noqa: F401  (doctest namespace)

from models.base import DetectorBase
from models.calibration import SurpriseMap

# 0.5 at a surprise of 2.75 decades, 0.9 at 5.5: see the module docstring.
CALIBRATION = SurpriseMap(s_half=2.75, alarm_ratio=2.0)
_MAX_HISTORY = 1_000_000  # ~100 MB per channel
_MIN_HISTORY = 20  # smallest `history` (and `warmup`) accepted: below it a rank means nothing
_TRANSFORMS = ("value", "level", "volatility")
_LN10 = math.log(10.0)
_LN2 = math.log(2.0)
_LOG10_2 = math.log10(2.0)


_RECENT_CAP = CALIBRATION.s_half * CALIBRATION.alarm_ratio  # decades: the alarm point (0.9)


class _Tail:
    """The last `size` values of one transform, kept sorted, and the two-sided surprise of a new one."""

    __slots__ = ("size", "tail", "trim", "warmup", "sorted", "ring")

    def __init__(self, size: int, tail: int, trim: int, warmup: int) -> None:
        self.size, self.tail, self.trim, self.warmup = size, tail, trim, warmup
        self.sorted: list[float] = []
        self.ring: deque[float] = deque()

    def surprise(self, v: float) -> float:
        """-log10 of the two-sided tail probability of v, in decades (0 before `warmup` values)."""
        s = self.sorted
        m = len(s)
        if m < self.warmup:
            return 0.0
        k = max(1, min(self.tail, m // 4))
        hi, lo = s[m - k], s[k - 1]
        if v > hi:
            # Exponential scale = mean excess without the `trim` largest: a few huge earlier
            # outliers among the k must not make every later spike look ordinary.
            t = min(self.trim, k - 1)
            excess = max(sum(s[m - k:m - t]) / max(k - t, 1) - hi, self._floor(s))
            logp = math.log(k / (m + 1)) - (v - hi) / excess
        elif v < lo:
            t = min(self.trim, k - 1)
            excess = max(lo - sum(s[t:k]) / max(k - t, 1), self._floor(s))
            logp = math.log(k / (m + 1)) - (lo - v) / excess
        else:  # the body: the rarer side's count of values at least as extreme as v
            logp = math.log((min(m - bisect.bisect_left(s, v), bisect.bisect_right(s, v)) + 1) / (m + 1))
        return max(0.0, -logp / _LN10 - _LOG10_2)  # two-sided: the worse of two tests

    @staticmethod
    def _floor(s: list[float]) -> float:
        """Smallest tail scale: relative to the history's range, so that units do not matter, and
        positive for a history of one repeated value."""
        return 1e-9 * (s[-1] - s[0]) or 1e-9 * abs(s[-1]) or 1e-300

    def add(self, v: float) -> None:
        bisect.insort(self.sorted, v)
        self.ring.append(v)
        if len(self.ring) > self.size:
            old = self.ring.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]


class _Channel:
    """Per-channel state: the three histories and the context that feeds the transforms."""

    __slots__ = ("tails", "level", "vol", "prev")

    def __init__(self, history: int, tail: int, trim: int, warmup: int) -> None:
        self.tails = [_Tail(history, tail, trim, warmup) for _ in _TRANSFORMS]
        self.level: float | None = None
        self.vol = 0.0
        self.prev: float | None = None

    def transforms(self, v: float, smooth: float, volatility: float) -> tuple[float, float, float]:
        """(value, level, volatility) after v, without changing the context."""
        if self.level is None:
            return v, v, 0.0
        level = self.level + smooth * (v - self.level)
        vol = self.vol + volatility * (abs(v - self.prev) - self.vol)
        return v, level, vol


class RarityDetector(DetectorBase):
    """Surprise of value, level and volatility against each channel's own history (module docstring).

    Parameters
    ----------
    history
        Records kept per transform and channel (memory and how long "seen before" lasts).
    tail
        Most extreme history values the exponential tail is fitted on (at most a quarter of it).
    smooth
        EWMA weight per record of the level transform (0.1: a 10-record memory).
    volatility
        EWMA weight per record of the volatility transform.
    suppress
        Decay per record of the recent maximum surprise the suppression gate compares with.
    quiet
        Factor applied to a surprise that does not beat the recent maximum (1.0 = no suppression).
    trim
        Largest excesses left out of the tail's scale (robust to that many glitches in the history).
    scan_seconds
        The time over which the false-alarm rate is held (see `set_cadence`): records faster than
        this are thinned into the history and their surprise corrected for their number.
    warmup
        Records a channel's history must hold before it reports any surprise: with fewer, a rank
        (resolution 1 / m) and a tail fitted on m / 4 values say little. Learned alerts need the
        streaming model's `learn_seconds` to cover at least this many records; `config check`
        does not know a CSV's rate, so replay and docs say so.
    """

    name = "rarity"
    version = "1"
    calibration = CALIBRATION
    novelty = True
    contextual = True  # observe() keeps per-channel input context (see models/base.py)

    def __init__(self, history: int = 10_000, tail: int = 100, smooth: float = 0.1, volatility: float = 0.1,
                 suppress: float = 0.003, quiet: float = 0.5, warmup: int = 100, scan_seconds: float = 300.0,
                 trim: int = 3) -> None:
        for key, val in (("history", history), ("tail", tail), ("warmup", warmup), ("trim", trim)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or val != int(val):
                raise ValueError(f"{key} must be a whole number of records, got {val!r}")
        if int(history) > _MAX_HISTORY:
            raise ValueError(f"history must be <= {_MAX_HISTORY} records (memory grows with it), got {history}")
        if int(history) < _MIN_HISTORY:
            raise ValueError(f"history must be >= {_MIN_HISTORY} records, got {history}")
        if not _MIN_HISTORY <= int(warmup) <= int(history):
            raise ValueError(f"warmup must be between {_MIN_HISTORY} and history ({history}) records, got {warmup}")
        if int(tail) < 1:
            raise ValueError(f"tail must be >= 1, got {tail}")
        for key, val in (("smooth", smooth), ("volatility", volatility), ("suppress", suppress)):
            if not 0.0 < float(val) <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {val}")
        if not float(scan_seconds) > 0.0:
            raise ValueError(f"scan_seconds must be > 0, got {scan_seconds}")
        if not 0.0 <= float(quiet) <= 1.0:
            raise ValueError(f"quiet must be in [0, 1], got {quiet}")
        self.history = int(history)
        self.tail = int(tail)
        self.smooth = float(smooth)
        self.volatility = float(volatility)
        self.suppress = float(suppress)
        self.quiet = float(quiet)
        self.warmup = int(warmup)
        self.scan_seconds = float(scan_seconds)
        if not 0 <= int(trim) < int(tail):
            raise ValueError(f"trim must be >= 0 and < tail ({tail}), got {trim}")
        self.trim = int(trim)
        self._stride = 1  # records per history entry, from the cadence (set_cadence)
        self._learned = 0
        # The last record's evaluation, shared by score, explain, learn and observe (the streaming
        # model calls them in that order on one record): (items, surprises, transforms, combined,
        # learned). After learn() the surprises are stale for score() but still what observe() needs.
        self._memo: tuple = ((), {}, {}, 0.0, False)
        self._channels: dict[str, _Channel] = {}
        self._recent = 0.0  # decaying maximum of recent surprises (the suppression gate)

    def _channel(self, key: str) -> _Channel:
        ch = self._channels.get(key)
        if ch is None:
            ch = self._channels[key] = _Channel(self.history, self.tail, self.trim, self.warmup)
        return ch

    def _evaluate(self, x: dict[str, float], for_score: bool = True) -> tuple:
        key = tuple(x.items())
        memo = self._memo
        if memo[0] == key and not (for_score and memo[4]):
            return memo
        surprises, transforms = {}, {}
        smooth, volatility = self.smooth, self.volatility
        for k, v in key:
            if v is None or not math.isfinite(v):
                surprises[k] = 0.0
                continue
            ch = self._channels.get(k)
            if ch is None:  # first record of this channel: nothing to compare with (created by learn)
                transforms[k] = (float(v), float(v), 0.0)
                surprises[k] = 0.0
                continue
            t = transforms[k] = ch.transforms(float(v), smooth, volatility)
            a, b, c = ch.tails
            surprises[k] = max(a.surprise(t[0]), b.surprise(t[1]), c.surprise(t[2]))
        n_tests = len(_TRANSFORMS) * max(1, len(surprises)) * self._stride  # tests per scan_seconds
        combined = max(0.0, max(surprises.values(), default=0.0) - math.log10(n_tests))
        self._memo = (key, surprises, transforms, combined, False)
        return self._memo

    def score(self, x: dict[str, float]) -> float:
        """Surprise in decades after suppression (>= 0); CALIBRATION maps it to [0, 1]."""
        s = self._evaluate(x)[3]
        return s if s > self._recent else s * self.quiet

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        """Per channel, its largest surprise in decades (before correction and suppression)."""
        return dict(self._evaluate(x)[1])

    def learn(self, x: dict[str, float]) -> None:
        """Add the record's transforms to each channel's history (every `stride`-th record once
        the cadence is known); call `observe` after it."""
        key, surprises, transforms, combined, _ = self._evaluate(x)
        if self._learned % self._stride == 0:
            for k, t in transforms.items():
                a, b, c = self._channel(k).tails
                a.add(t[0])
                b.add(t[1])
                c.add(t[2])
        self._learned += 1
        self._memo = (key, surprises, transforms, combined, True)

    def set_cadence(self, seconds_per_record: float) -> None:
        """Tell the detector how often records come (models/streaming.py does, when learning ends).

        Faster than one record per `scan_seconds`, the history keeps one record in `stride` =
        round(scan_seconds / cadence), so that it spans the same time (10,000 records of 5 min:
        35 days), and a surprise is corrected for the `stride` records tested per scan: the chance
        that the rarest of them is that rare (Bonferroni over time), so the false-alarm rate is
        per unit of time, not per record.
        """
        if seconds_per_record > 0 and math.isfinite(seconds_per_record):
            self._stride = max(1, round(self.scan_seconds / seconds_per_record))
            self._memo = ((), {}, {}, 0.0, False)

    def observe(self, x: dict[str, float]) -> None:
        """Advance the context (level, volatility, suppression) past this record; call after learn."""
        _, _, transforms, combined, _ = self._evaluate(x, for_score=False)
        # Capped at the alarm level: a huge surprise (a sensor glitch of 100 decades) must not
        # silence every later alarm for thousands of records.
        self._recent = max(self._recent * (1.0 - self.suppress), min(combined, _RECENT_CAP))
        for k, t in transforms.items():
            ch = self._channel(k)
            _, ch.level, ch.vol = t
            ch.prev = t[0]
        self._memo = ((), {}, {}, 0.0, False)

    def state(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "params": {"history": self.history, "tail": self.tail, "smooth": self.smooth,
                       "volatility": self.volatility, "suppress": self.suppress, "quiet": self.quiet,
                       "warmup": self.warmup, "scan_seconds": self.scan_seconds, "trim": self.trim},
            "stride": self._stride,
            "learned": self._learned,
            "recent": self._recent,
            "channels": {k: {"level": c.level, "vol": c.vol, "prev": c.prev, "history": [list(t.ring) for t in c.tails]}
                         for k, c in self._channels.items()},
        }

    @classmethod
    def from_state(cls, state: dict) -> "RarityDetector":
        det = cls(**state["params"])
        det._recent = float(state["recent"])
        det._stride = int(state.get("stride", 1))
        det._learned = int(state.get("learned", 0))
        for k, c in state["channels"].items():
            ch = det._channel(k)
            ch.level, ch.vol, ch.prev = c["level"], float(c["vol"]), c["prev"]
            for tail, values in zip(ch.tails, c["history"]):
                for v in values:
                    tail.add(float(v))
        return det
