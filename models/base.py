"""The one small protocol every detector implements (river's anomaly/base.py is the model).

A detector sees feature vectors as `dict[str, float]` (feature name -> value). It learns
the machine's healthy behaviour online and scores how unusual a vector is. Raw scores are
unbounded and model-specific (higher = more anomalous); models/calibration.py turns them
into [0, 1] against the distribution seen on the healthy baseline.

Contract, checked for every registered detector by one test (tests/test_detectors.py):
- `__init__` only stores its arguments; learned state lives in `_private` fields.
- `learn(x)` updates the model with one vector; `score(x)` does not change the model.
- `score(x)` returns a finite float >= 0 for any finite input.
- `explain(x)` returns per-feature contributions (same keys as x, >= 0) for alert reasons.
- `state()` returns a JSON-serialisable dict; `from_state(state)` restores an equal model.
- `calibration`: None when raw scores are calibrated on the healthy baseline (models/calibration.py
  `Calibrator`, fitted by models/streaming.py), or a fixed callable raw -> [0, 1] when the raw score
  already has one meaning on every stream (a surprise in decades: `SurpriseMap`, models/rarity.py).
- `novelty`: False for a baseline model (after learning it adapts only from records below the
  warning level, so a developing fault is never absorbed); True for a novelty model, which learns
  every record: what it reports is what is new, and a new normal stops being new.
- Optional `observe(x)`: called after every record (after `learn` when it learns) to advance input
  context such as smoothing or a previous value; `score` and `learn` only read that context.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str
    calibration: Callable[[float], float] | None
    novelty: bool

    def learn(self, x: dict[str, float]) -> None: ...

    def score(self, x: dict[str, float]) -> float: ...

    def explain(self, x: dict[str, float]) -> dict[str, float]: ...

    def state(self) -> dict: ...

    @classmethod
    def from_state(cls, state: dict) -> "Detector": ...
