"""What a sensor's pipeline says at `info`: learning milestones and one summary per aggregate.

A window every few seconds is ~20,000-65,000 lines a day per sensor; at `info` they would bury
the lines a person reads the journal for (alerts, a sensor going offline, the baseline being
ready). So the per-window line is `debug`, and at `info` each sensor writes:

- `learning baseline` at 25 %, 50 % and 75 % of `detector.learn_seconds` (counted in
  feature-vector time, as the detector counts them); `baseline learned`, with the baseline's
  state, size and reason, is the pipeline's own line when learning ends (agent/pipeline.py);
- `summary` once per aggregate interval: windows, score mean/max, the condition (highest alert
  level of the learned model and the ISO check), and the
  vibration velocity and temperature that an operator compares against the machine's limits.
"""

from __future__ import annotations

MILESTONES = (0.25, 0.5, 0.75)


class LearningLog:
    """Logs the learning milestones of one sensor once each.

    >>> class Log:
    ...     def info(self, event, **kw): print(event, kw)
    >>> m = LearningLog(Log(), "pump1", learn_seconds=100.0)
    >>> for ts in (0.0, 10.0, 26.0, 30.0, 80.0): m.update(ts, ready=False)
    learning baseline {'sensor': 'pump1', 'progress': '25%', 'learn_seconds': 100.0}
    learning baseline {'sensor': 'pump1', 'progress': '75%', 'learn_seconds': 100.0}
    >>> m.update(101.0, ready=True); m.update(102.0, ready=True)  # the pipeline announces the end
    """

    def __init__(self, log, sensor: str, learn_seconds: float | None) -> None:
        self.log = log
        self.sensor = sensor
        self.learn_seconds = learn_seconds
        self._t0: float | None = None
        self._next = 0  # index into MILESTONES
        self._ready: bool | None = None

    def update(self, ts: float, ready: bool) -> None:
        if self.log is None:
            return
        if ready:
            self._ready = True
            return
        self._ready = False
        if not self.learn_seconds:
            return
        if self._t0 is None:
            self._t0 = ts
        progress = (ts - self._t0) / self.learn_seconds
        reached = None
        while self._next < len(MILESTONES) and progress >= MILESTONES[self._next]:
            reached = MILESTONES[self._next]
            self._next += 1
        if reached is not None:  # after a gap, one line for the highest milestone passed
            self.log.info("learning baseline", sensor=self.sensor, progress=f"{reached:.0%}",
                          learn_seconds=self.learn_seconds)


def summary_fields(aggregate, condition: str, ready: bool) -> dict:
    """The fields of one `summary` line for an aggregate.

    >>> from agent.records import Aggregate
    >>> a = Aggregate(60.0, "gw", "pump1", 60.0, 14, {"ax.velocity_rms_mm_s": {"mean": 1.0, "min": 0.9, "max": 1.2},
    ...     "temp.mean_c": {"mean": 41.0, "min": 40.9, "max": 41.2}, "score": {"mean": 0.1, "min": 0.0, "max": 0.31}})
    >>> summary_fields(a, "clear", True)
    {'sensor': 'pump1', 'interval_s': 60.0, 'windows': 14, 'baseline': 'ready', 'condition': 'clear', 'score_mean': 0.1, 'score_max': 0.31, 'velocity_rms_mm_s_max': 1.2, 'temp_c_mean': 41.0}
    """
    f = aggregate.features
    out = {"sensor": aggregate.sensor, "interval_s": aggregate.interval_s, "windows": aggregate.count,
           "baseline": "ready" if ready else "learning", "condition": condition}
    if "score" in f:
        out.update(score_mean=round(f["score"]["mean"], 3), score_max=round(f["score"]["max"], 3))
    velocity = [s["max"] for k, s in f.items() if k.endswith("velocity_rms_mm_s")]
    if velocity:
        out["velocity_rms_mm_s_max"] = round(max(velocity), 3)
    temps = [s["mean"] for k, s in f.items() if k.endswith("mean_c")]
    if temps:
        out["temp_c_mean"] = round(max(temps), 2)
    return out
