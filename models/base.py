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
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Detector(Protocol):
    name: str
    version: str

    def learn(self, x: dict[str, float]) -> None: ...

    def score(self, x: dict[str, float]) -> float: ...

    def explain(self, x: dict[str, float]) -> dict[str, float]: ...

    def state(self) -> dict: ...

    @classmethod
    def from_state(cls, state: dict) -> "Detector": ...
