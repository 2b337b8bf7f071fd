"""Alert policy: turns a stream of calibrated scores into few, meaningful alert events.

Levels are ordered clear < warning < alarm. Two mechanisms keep a noisy score from
flooding subscribers:

- N-of-M debounce: a level is raised only when at least `n` of the last `m` scores are at
  or above its threshold (one spike is not a fault; a fault persists).
- Hysteresis: a raised level is left only when at least `n` of the last `m` scores are
  below `threshold - hysteresis`, so a score hovering at the threshold does not chatter.

Each change of level is one event; leaving the last raised level emits `clear`. Scores from
a detector that is still learning its baseline (`ready=False`) are ignored: nothing learned,
nothing to compare with. The clock is the score's own timestamp, so the policy is pure and
runs identically live and in replay.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from agent.records import Alert, Score

_RANK = {"clear": 0, "warning": 1, "alarm": 2}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Alert thresholds (score in [0, 1]), n-of-m debounce and hysteresis (from the sensor's `alerts:`)."""

    warning: float = 0.5
    alarm: float = 0.9
    debounce_n: int = 3
    debounce_m: int = 5
    hysteresis: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.warning < self.alarm <= 1:
            raise ValueError("thresholds must satisfy 0 < warning < alarm <= 1")
        if not 1 <= self.debounce_n <= self.debounce_m:
            raise ValueError("debounce needs 1 <= n <= m")


class AlertPolicy:
    """Per-sensor alert state machine.

    >>> p = AlertPolicy(PolicyConfig(debounce_n=2, debounce_m=3), device="gw", sensor="pump1")
    >>> s = lambda v, t: Score("pump1", t, v, True, "m@1")
    >>> events = [p.update(s(v, float(t))) for t, v in enumerate([0.1, 0.95, 0.2, 0.96, 0.97, 0.3, 0.1, 0.1])]
    >>> [(e.ts, e.level) for e in events if e]
    [(3.0, 'alarm'), (6.0, 'clear')]
    """

    def __init__(self, config: PolicyConfig, device: str, sensor: str, kind: str = "anomaly") -> None:
        self.config = config
        self.device = device
        self.sensor = sensor
        self.kind = kind
        self._recent: deque[float] = deque(maxlen=config.debounce_m)
        self._level = "clear"

    @property
    def level(self) -> str:
        return self._level

    @property
    def active(self) -> bool:
        return self._level != "clear"

    def restore(self, level: str) -> None:
        """Resume at a level raised before a restart, so its `clear` is still emitted."""
        if level in _RANK:
            self._level = level

    def _threshold(self, level: str) -> float:
        return self.config.alarm if level == "alarm" else self.config.warning

    def _count(self, predicate) -> int:
        return sum(1 for v in self._recent if predicate(v))

    def update(self, score: Score) -> Alert | None:
        if not score.ready:
            return None
        self._recent.append(score.value)
        n, hyst = self.config.debounce_n, self.config.hysteresis

        # Highest level whose threshold is held by n of the last m scores.
        raised = "clear"
        for level in ("warning", "alarm"):
            thr = self._threshold(level)
            if self._count(lambda v: v >= thr) >= n:
                raised = level
        new = self._level
        if _RANK[raised] > _RANK[self._level]:
            new = raised
        elif self._level != "clear":
            # Step down only when n of the last m are clearly below the held level.
            thr = self._threshold(self._level) - hyst
            if self._count(lambda v: v < thr) >= n:
                new = "warning" if self._level == "alarm" and self._holds("warning") else "clear"
        if new == self._level:
            return None
        previous, self._level = self._level, new
        threshold = self._threshold(new if new != "clear" else previous)
        return Alert(
            ts=score.ts,
            device=self.device,
            sensor=self.sensor,
            level=new,
            score=score.value,
            threshold=threshold,
            model=score.model,
            reason=score.reason,
            kind=self.kind,
        )

    def _holds(self, level: str) -> bool:
        thr = self._threshold(level) - self.config.hysteresis
        return self._count(lambda v: v >= thr) >= self.config.debounce_n
