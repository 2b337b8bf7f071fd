"""Did the learning data change regime? A one-sided mean-shift test on out-of-sample scores.

While a baseline is learned, every window is scored *before* the detector learns it, so each raw
score says how unusual that window was for the machine seen so far. On a healthy machine these
scores drift down slowly (the model improves); when a fault begins inside the learning period
the windows after its onset score far higher than those before, until the model has absorbed
enough of them to call them normal. That step is what this test finds, on log scores:

    for every split k:  t_k = (mean(y[k:]) - mean(y[:k])) / (s_pooled * sqrt(1/k + 1/(n-k)))

(the two-sample t statistic of a single change in mean, maximised over the split: the classical
CUSUM/likelihood-ratio change-point test for a normal mean, Hinkley 1970). A change is reported
when the largest t_k reaches `threshold` *and* the later segment's mean log score is at least
`min_shift` higher (2.5: typical scores 12x higher), so a long, quiet baseline cannot report a
statistically significant but physically trivial step. Only increases count: a machine getting
quieter during learning is not a fault. The defaults were set on healthy simulated learning runs
(bench/baseline.py: no healthy run reaches them); docs/BENCHMARKS.md has the figures.

>>> rng = np.random.default_rng(0)
>>> healthy = np.exp(rng.normal(0.0, 0.4, 60))
>>> regime_change(np.arange(60.0), healthy) is None
True
>>> faulty = np.concatenate([healthy[:36], 30 * healthy[36:]])  # a fault at 60 % of learning
>>> change = regime_change(np.arange(60.0), faulty)
>>> change.ts, change.index, round(change.shift, 1)
(36.0, 36, 3.6)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD = 6.0
MIN_SHIFT = 2.5


@dataclass(frozen=True, slots=True)
class Change:
    """A detected change of regime: when, and how large."""

    ts: float  # time of the first score of the new regime
    index: int  # its position in the (positive, finite) scores given
    statistic: float  # the t statistic at the split
    shift: float  # mean log score after minus before (nats)


def regime_change(ts, raw, *, threshold: float = THRESHOLD, min_shift: float = MIN_SHIFT,
                  min_segment: int = 4) -> Change | None:
    """The most likely upward change of regime in raw scores `raw` taken at times `ts` (same
    length, time order), or None. Non-finite and non-positive scores are left out (a model that
    has seen one vector scores 0). Needs 2 * min_segment scores; fewer: None."""
    ts = np.asarray(ts, dtype=float)
    raw = np.asarray(raw, dtype=float)
    ok = np.isfinite(raw) & (raw > 0)
    ts, y = ts[ok], np.log(raw[ok])
    n = y.size
    m = max(min_segment, n // 20)  # each segment holds at least 5 % of the scores
    if n < 2 * m:
        return None
    k = np.arange(m, n - m + 1)
    cs = np.concatenate([[0.0], np.cumsum(y)])
    cs2 = np.concatenate([[0.0], np.cumsum(y * y)])
    mean_b = cs[k] / k
    mean_a = (cs[n] - cs[k]) / (n - k)
    ss = (cs2[k] - k * mean_b**2) + (cs2[n] - cs2[k] - (n - k) * mean_a**2)
    s = np.sqrt(np.maximum(ss / (n - 2), 1e-12))
    t = (mean_a - mean_b) / (s * np.sqrt(1.0 / k + 1.0 / (n - k)))
    best = int(np.argmax(t))
    shift = float(mean_a[best] - mean_b[best])
    if t[best] < threshold or shift < min_shift:
        return None
    split = int(k[best])
    return Change(float(ts[split]), split, float(t[best]), shift)
