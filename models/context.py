"""What is news in a surprise: the context of recent alerts and of the same time on earlier days.

A one-channel detector (models/rarity.py) measures how rare a record is against the stream's
history, in decades (-log10 p). Two kinds of rare records are not news to an operator:

- **the rest of an episode already reported**: after a record reaches the warning level, for
  `refractory_s` seconds the surprise counts only by how much it exceeds the surprise of that
  last alert, s - s_alert (how much rarer than what was already said). An escalation (a fault
  that grows, p falling by orders of magnitude more) is still reported at once;
- **a rhythm**: an event that happens at about the same time every day (a nightly backup's CPU
  spike, a shift start). For each of the last `days` days (period `period_s`) the largest surprise
  that reached the warning level within +-`jitter_s` of this time is that day's peak; the second
  largest peak (something that happened at this hour on at least two earlier days) is the
  reference, and the surprise counts only by its excess over it. The first two occurrences are
  reported; the third, at the same time and no larger, is not. One coincidence (yesterday's alert
  at the hour a new fault starts today) damps nothing. A rarity that never happened at this time
  of day (a spike at an unusual hour) keeps its full surprise.

Both are differences of decades, so the result is still "how many times rarer than the
context", unit-free, and the detector's fixed calibration keeps its meaning (0.5 = warning).
This is the contextual part of the default one-channel detector, chosen by leave-one-category-out
on the NAB development half (docs/detectors.md); the idea of scoring a record against its time-of-day
context follows seasonal anomaly detection (e.g. Hochenbaum et al. 2017, "Automatic anomaly
detection in the cloud via statistical learning", Twitter's seasonal ESD), here reduced to a
per-bucket maximum of surprises so that it costs O(1) per record.

Memory is constant: one float per history bucket for `days` periods plus the jitter (at 5-minute
buckets and 3 days, 871 floats), whatever the record rate. Causal: a record's news uses the
surprises of earlier records only.

Examples
--------
>>> ctx = EpisodeContext(refractory_s=3600, period_s=0)
>>> ctx.set_cadence(300.0, 1)          # one record per 5 minutes: refractory of 12 records
>>> ctx.news(4.0, 4.0)                 # the first alert of an episode
4.0
>>> ctx.advance(4.0, 4.0, warn=2.75)
>>> ctx.news(4.5, 4.5)                 # 10 minutes later, barely rarer: not news
0.5
>>> ctx.news(9.0, 9.0)                 # five decades rarer: news
5.0
"""

from __future__ import annotations

import math

_MAX_BUCKETS = 200_000  # ring size cap (a 1 Hz stream with a 5 s stride over a week is 120,960)
# A rhythm is what happened at this time on at least two earlier days: one coincidence (yesterday's
# alert at the hour a new fault starts today) must not damp the new fault (tests/test_replay.py).
_REPEATS = 2
_LOOKUP_FLOOR = 1.0  # decades: below this (a score under 0.05) the rhythm is not looked up, for speed


class EpisodeContext:
    """The surprise of a record relative to its recent alerts and its time-of-day history.

    Parameters
    ----------
    refractory_s
        Seconds after an alert during which only the excess over that alert's surprise counts
        (0 = off).
    period_s
        Length of the rhythm in seconds (86400: daily; 0 = no rhythm).
    days
        Periods looked back for the same time (0 = no rhythm).
    jitter_s
        How far, in seconds, the same time may wander from period to period.

    Raises ValueError (in words) for negative durations or a jitter of half a period or more.
    """

    __slots__ = ("refractory_s", "period_s", "days", "jitter_s", "_records", "_stride", "_n", "_since",
                 "_last", "_period", "_jitter", "_ring", "_bucket")

    def __init__(self, refractory_s: float = 7200.0, period_s: float = 86400.0, days: int = 3,
                 jitter_s: float = 1800.0) -> None:
        for key, val in (("refractory_s", refractory_s), ("period_s", period_s), ("jitter_s", jitter_s)):
            if not (isinstance(val, (int, float)) and not isinstance(val, bool)) or not 0.0 <= float(val) < math.inf:
                raise ValueError(f"{key} must be a duration in seconds >= 0, got {val!r}")
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days != int(days) or days < 0:
            raise ValueError(f"days must be a whole number >= 0, got {days!r}")
        if period_s and 2 * float(jitter_s) >= float(period_s):
            raise ValueError(f"jitter_s must be less than half of period_s ({period_s}), got {jitter_s}")
        self.refractory_s, self.period_s, self.days, self.jitter_s = (
            float(refractory_s), float(period_s), int(days), float(jitter_s))
        self._records = 0  # refractory in records (0 until the cadence is known)
        self._stride = 1  # records per bucket
        self._n = 0  # records advanced past
        self._since = math.inf  # records since the last alert
        self._last = 0.0  # that alert's surprise, decades
        self._period = self._jitter = 0  # in buckets; 0 = no rhythm (yet)
        self._ring: list[float] = []  # largest surprise per bucket, the last days * period + jitter + 1
        self._bucket = -1  # the bucket the newest ring entry belongs to

    def set_cadence(self, seconds_per_record: float, stride: int = 1) -> None:
        """Turn the durations into records and buckets (a bucket = `stride` records, one history entry)."""
        if not (seconds_per_record > 0 and math.isfinite(seconds_per_record)):
            return
        self._stride = max(1, int(stride))
        self._records = round(self.refractory_s / seconds_per_record)
        per_bucket = seconds_per_record * self._stride
        period = round(self.period_s / per_bucket) if self.period_s and self.days else 0
        jitter = round(self.jitter_s / per_bucket)
        size = self.days * period + jitter + 1
        if period < 2 or size > _MAX_BUCKETS or 2 * jitter >= period:
            period, jitter, size = 0, 0, 0  # too coarse or too fine a rhythm to look up: off
        if (period, jitter) != (self._period, self._jitter):
            self._period, self._jitter, self._ring, self._bucket = period, jitter, [0.0] * size, -1

    def reference(self) -> float:
        """The second largest of the per-period maxima of surprise within the jitter of this time
        on the last `days` periods: what has recurred at this time (0 if nothing has twice)."""
        ring, size = self._ring, len(self._ring)
        if not size:
            return 0.0
        now = self._n // self._stride
        lo_valid = max(0, now - size + 1)  # buckets older than the ring, or never filled, hold nothing
        peaks = []
        for d in range(1, self.days + 1):
            centre = now - d * self._period
            lo, hi = max(centre - self._jitter, lo_valid), min(centre + self._jitter, now - 1)
            peaks.append(max((ring[b % size] for b in range(lo, hi + 1)), default=0.0))
        peaks.sort(reverse=True)
        return peaks[_REPEATS - 1] if len(peaks) >= _REPEATS else 0.0

    def news(self, surprise: float, gated: float) -> float:
        """The part of `surprise` (decades) that is news; `gated` is it after the caller's own
        suppression, and the result never exceeds it."""
        out = gated
        if self._since < self._records:
            out = min(out, max(0.0, surprise - self._last))
        if out >= _LOOKUP_FLOOR and self._ring:
            ref = self.reference()
            if ref > 0.0:
                out = min(out, max(0.0, surprise - ref))
        return out

    def advance(self, surprise: float, news: float, warn: float) -> None:
        """Move past a record whose surprise and news (both decades) are given; `warn` is the
        warning level in decades (a news at or above it starts a refractory period)."""
        if self._ring:  # alerts only: the noise floor's ordinary surprises are no rhythm
            surprise = surprise if surprise >= warn else 0.0
            b = self._n // self._stride
            i = b % len(self._ring)
            if b != self._bucket:
                self._ring[i], self._bucket = surprise, b
            elif surprise > self._ring[i]:
                self._ring[i] = surprise
        if news >= warn:
            self._since, self._last = 0, surprise
        else:
            self._since += 1
        self._n += 1

    def state(self) -> dict:
        return {"refractory_s": self.refractory_s, "period_s": self.period_s, "days": self.days,
                "jitter_s": self.jitter_s, "records": self._records, "stride": self._stride, "n": self._n,
                "since": None if math.isinf(self._since) else self._since, "last": self._last,
                "period": self._period, "jitter": self._jitter, "ring": list(self._ring), "bucket": self._bucket}

    @classmethod
    def from_state(cls, state: dict) -> "EpisodeContext":
        ctx = cls(state["refractory_s"], state["period_s"], state["days"], state["jitter_s"])
        ctx._records, ctx._stride, ctx._n = int(state["records"]), int(state["stride"]), int(state["n"])
        ctx._since = math.inf if state["since"] is None else int(state["since"])
        ctx._last, ctx._period, ctx._jitter = float(state["last"]), int(state["period"]), int(state["jitter"])
        ctx._ring, ctx._bucket = [float(v) for v in state["ring"]], int(state["bucket"])
        return ctx
