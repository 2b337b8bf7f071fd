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
- `observe(x)`: called after every record (after `learn` when it learns) to advance input
  context such as smoothing or a previous value; `score` and `learn` only read that context. A
  detector that keeps such context says `contextual = True` (leave-one-out calibration would
  break its context, so the streaming model calibrates it on its learning-time scores instead).
- `adaptive`: True when the detector has a `half_life` (in learned vectors, None = equal weights)
  that the streaming model sets from `adapt_half_life_s` once learning ends.
- `warmup`: records a novelty model needs before its scores mean anything (0: none).
- `set_cadence(seconds_per_record)`: told once learning ends, for detectors whose history is
  counted in time (models/rarity.py); a no-op for the others.
`DetectorBase` gives the defaults of the last four, so no caller probes with getattr/hasattr.

What the pipeline drives is a `ScoringModel` (models/streaming.StreamingModel learns on the device,
models/onnx_runtime.BundleModel runs a signed bundle, agent/hotswap.Guarded wraps a swapped-in
model with its fallback); its contract is on the class below. Both contracts are checked by
tests/test_detectors.py.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable


@runtime_checkable
class Detector(Protocol):
    """What every registered detector implements; the contract is the module docstring."""

    name: str
    version: str
    calibration: Callable[[float], float] | None
    novelty: bool

    contextual: bool
    adaptive: bool
    warmup: int

    def learn(self, x: dict[str, float]) -> None: ...

    def observe(self, x: dict[str, float]) -> None: ...

    def set_cadence(self, seconds_per_record: float) -> None: ...

    def score(self, x: dict[str, float]) -> float: ...

    def explain(self, x: dict[str, float]) -> dict[str, float]: ...

    def state(self) -> dict: ...

    @classmethod
    def from_state(cls, state: dict) -> "Detector": ...


class DetectorBase:
    """The defaults of a detector's optional capabilities (see the module docstring)."""

    contextual = False
    adaptive = False
    warmup = 0

    def observe(self, x: dict[str, float]) -> None:
        """Advance input context with the record just seen; nothing for a context-free detector."""

    def set_cadence(self, seconds_per_record: float) -> None:
        """Learn the record rate (seconds between records); nothing for a detector counted in records."""


@runtime_checkable
class ScoringModel(Protocol):
    """What the pipeline calls for every feature vector of a sensor.

    - `update(x, ts, exclude=None)` scores `x` (feature name -> value; non-finite values are
      ignored) at `ts` (epoch seconds) and may learn from it; returns (score in [0, 1], ready,
      reason) where reason is at most 3 (feature, value, contribution) tuples, largest first. A NaN
      score means the model failed on this input (the hot-swap guard rolls back on it). Never
      raises on odd input. `exclude` is why `x` must not enter a learned baseline (e.g.
      "iso10816", "implausible"); a model that learns nothing on the device ignores it.
    - `take_events()` returns what happened to the baseline since the last call, in order, and
      forgets it: ("learned", baseline document) once learning ends, ("drift", large: bool) when
      drift against the baseline becomes large or ends. Always [] for a model without an
      on-device baseline.
    - `baseline()`: the status document of the baseline learned on the device (models/streaming.py
      `StreamingModel.baseline`), or None when the model has none (a signed bundle): such a model
      has nothing to reset either.
    - `ready`: False while the model is still learning its baseline; such scores are shown, never
      alerted on.
    - `learns`: True when the model changes on the device, so the pipeline saves `state()` and
      restores it at start; False for a signed bundle (its file is its state).
    - `state()`: a JSON-serialisable dict.
    - `name`, `version`: what alerts name as ``name@version``.
    """

    name: str
    version: str

    @property
    def ready(self) -> bool: ...

    @property
    def learns(self) -> bool: ...

    def update(self, x: dict[str, float], ts: float, exclude: str | None = None) -> tuple[float, bool, list]: ...

    def take_events(self) -> list[tuple[str, object]]: ...

    def baseline(self) -> dict | None: ...

    def state(self) -> dict: ...
