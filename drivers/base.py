"""What a driver emits, and the contract every source keeps: the lowest layer's records.

A waveform source (lines, frames, sim) yields `Frame`s of raw samples; a value source (a Modbus
transmitter that computes its own condition values) yields `FeatureVector`s. A source says which
one in `kind`, so the pipeline picks its front end once instead of testing every item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WAVEFORM = "waveform"  # Source.kind: read() returns Frame
VALUES = "values"  # Source.kind: read() returns FeatureVector


@dataclass(frozen=True, slots=True)
class Frame:
    """A block of consecutive raw samples from one sensor, as the driver read them.

    `samples` has shape (n, len(channels)), float64, rows in time order. `t_end` is the
    wall-clock time of the last sample (the moment the block was read). Raw samples never
    leave the device: frames stop at the feature stage. `rejected` counts samples the
    plausibility check removed from (or just before) this block: the windows around them are
    never learned into a baseline.
    """

    sensor: str
    t_end: float
    channels: tuple[str, ...]
    samples: np.ndarray
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """Condition features of one window. Keys are `<channel>.<feature>`, e.g.
    `ax.velocity_rms_mm_s`, `temp.mean_c`; the order of `values` is stable per sensor."""

    sensor: str
    ts: float  # end of the window
    values: dict[str, float]
