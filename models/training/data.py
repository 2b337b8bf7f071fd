"""Training data: recorded inputs -> feature rows, through the agent's own feature pipeline.

Inputs (the replay formats of docs/replay.md, read with the replay's own readers in
drivers/recordings.py, plus two for convenience):

- a CSV file: header row, delimiter ``,`` ``;`` or tab, the first column whose name contains
  ``time`` or ``date`` is the timestamp. Without ``rate`` every row is one record whose columns
  are the features (pre-computed, low-rate data such as SKAB). With ``rate`` the columns are raw
  waveform channels, cut into windows and turned into features by models/features.py.
- a directory of burst files: one capture per file, whitespace- or comma-separated columns,
  ``rate`` samples per second, the capture time in the file name (``2004-02-12T10:32:39`` or
  ``2004.02.12.10.32.39``); one feature row per burst.
- a MATLAB ``.mat`` file, or a directory of them (the CWRU bearing data): the ``*_time`` signals
  are channels (``--columns DE,FE`` picks by suffix), windows -> features at ``rate``.
- ``sim[:SECONDS[:FAULT[:SEED]]]``: the simulated machine (drivers/simulator.py), healthy by
  default, e.g. ``sim:600`` or ``sim:120:outer-race``.

Waveform features use the sensor's FeatureSpec (from ``--config``/``--sensor``, so the bundle
matches what that sensor computes), or a spec built from the rate and channel names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from models.features import FeatureSpec, extract_batch, feature_names

class DataError(ValueError):
    """Unreadable or unsuitable training input; the message names the file and the problem."""


@dataclass(frozen=True)
class Dataset:
    """Feature rows (n, F) in time order, their names, and the spec that computed them (None for
    CSV records whose columns are the features)."""

    x: np.ndarray
    names: list
    spec: FeatureSpec | None
    source: str
    window: int | None = None


def windows(samples: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n, c) samples -> (w, size, c) windows starting every `hop` samples (a view, no copy).

    >>> windows(np.arange(10.0)[:, None], 4, 3)[:, :, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0], [3.0, 4.0, 5.0, 6.0], [6.0, 7.0, 8.0, 9.0]]
    """
    n = len(samples)
    if n < size:
        return np.empty((0, size, samples.shape[1]))
    starts = np.arange(0, n - size + 1, hop)
    view = np.lib.stride_tricks.sliding_window_view(samples, size, axis=0)  # (n-size+1, c, size)
    return view[starts].transpose(0, 2, 1)


def featurize(samples: np.ndarray, spec: FeatureSpec, size: int, hop: int, chunk: int = 256) -> np.ndarray:
    """Feature rows of every window of a (n, c) recording (batched, bounded memory)."""
    w = windows(np.asarray(samples, dtype=np.float64), size, hop)
    if not len(w):
        raise DataError(f"recording of {len(samples)} samples is shorter than one window ({size})")
    return np.concatenate([extract_batch(w[i:i + chunk], spec) for i in range(0, len(w), chunk)])


def _pick(names: list[str], columns: list[str] | None, where: str) -> list[int]:
    from drivers.recordings import InputError, pick_columns

    try:
        return pick_columns(names, columns, where)
    except InputError as exc:
        raise DataError(str(exc)) from None


def read_mat(path: str, columns: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """drivers/recordings.read_mat, its InputError as a DataError."""
    from drivers.recordings import InputError, read_mat as read

    try:
        return read(path, columns)
    except InputError as exc:
        raise DataError(str(exc)) from None


def simulate(seconds: float, spec: FeatureSpec, size: int, hop: int, fault: str | None = None,
             seed: int = 0, rpm: float = 1780.0) -> np.ndarray:
    """Feature rows of the simulated machine (with `fault`, fully developed from the start)."""
    from drivers.simulator import CHANNELS, Machine

    unknown = [c for c in spec.channels if c not in CHANNELS]
    if unknown:
        raise DataError(f"the simulator has channels {', '.join(CHANNELS)}, not {', '.join(unknown)}")
    machine = Machine(rate=spec.rate, rpm=rpm, seed=seed, fault=fault, fault_at=-1e6 if fault else 0.0,
                      channels=tuple(spec.channels))
    return featurize(machine.generate(int(seconds * spec.rate)), spec, size, hop)


def load(source: str, *, spec: FeatureSpec | None = None, rate: float | None = None,
         columns: list[str] | None = None, window: int = 4096, hop: int | None = None,
         decimate: int = 1) -> Dataset:
    """Feature rows from any supported input (see module docstring)."""
    hop = hop or window
    if source == "sim" or source.startswith("sim:"):
        parts = source.split(":")
        seconds = float(parts[1]) if len(parts) > 1 and parts[1] else 300.0
        fault = parts[2] if len(parts) > 2 and parts[2] else None
        seed = int(parts[3]) if len(parts) > 3 and parts[3] else 0
        spec = spec or FeatureSpec.for_channels(rate or 3200.0, ("ax", "ay", "az", "temp"))
        return Dataset(simulate(seconds, spec, window, hop, fault, seed), feature_names(spec), spec, source, window)
    if not os.path.exists(source):
        raise DataError(f"{source}: no such file or directory")

    if os.path.isdir(source):
        files = sorted(os.listdir(source))
        mats = [f for f in files if f.endswith(".mat")]
        if mats:
            return _waveforms([read_mat(os.path.join(source, f), columns) for f in mats],
                              source, spec, rate, window, hop, decimate)
        from drivers.recordings import InputError, list_bursts, read_burst  # the replay's own readers

        if not rate and spec is None:
            raise DataError(f"{source}: burst files need --rate")
        try:
            bursts = [read_burst(p) for _, p in list_bursts(source)]
        except InputError as exc:
            raise DataError(str(exc)) from None
        if not bursts:
            raise DataError(f"{source}: no burst files with a capture time in their name")
        n_ch = bursts[0].shape[1]
        names = [f"ch{i + 1}" for i in range(n_ch)]
        sel = _pick(names, columns, source)
        names = [names[i] for i in sel]
        spec = spec or FeatureSpec.for_channels(rate, tuple(names))
        size = min(len(b) for b in bursts)
        x = np.concatenate([extract_batch(np.stack([b[:size, sel] for b in bursts[i:i + 64]]), spec)
                            for i in range(0, len(bursts), 64)])
        return Dataset(x, feature_names(spec), spec, source, size)

    if source.endswith(".mat"):
        return _waveforms([read_mat(source, columns)], source, spec, rate, window, hop, decimate)
    from drivers.recordings import InputError, read_csv as replay_csv  # the replay's own reader

    try:
        table = replay_csv(source, columns)
    except InputError as exc:
        raise DataError(str(exc)) from None
    names, data = list(table.columns), np.asarray(table.values, dtype=np.float64)
    if rate or spec is not None:
        return _waveforms([(names, data)], source, spec, rate, window, hop, decimate)
    data = data[np.isfinite(data).all(axis=1)]
    if not len(data):
        raise DataError(f"{source}: no complete numeric rows")
    return Dataset(data, names, None, source)


def _waveforms(recordings, source, spec, rate, window, hop, decimate) -> Dataset:
    names = recordings[0][0]
    if any(r[0] != names for r in recordings):
        raise DataError(f"{source}: recordings have different channels")
    if spec is not None and len(spec.channels) != len(names):
        raise DataError(f"{source}: {len(names)} channels ({', '.join(names)}) but the sensor has "
                        f"{len(spec.channels)} ({', '.join(spec.channels)}); pick them with --columns")
    if spec is None:
        if not rate:
            raise DataError(f"{source}: waveform input needs --rate (samples per second)")
        spec = FeatureSpec.for_channels(rate / decimate, tuple(names))
    rows = []
    for _, data in recordings:
        if decimate > 1:
            from scipy.signal import decimate as _decimate

            data = _decimate(data, decimate, axis=0, zero_phase=True)
        rows.append(featurize(data, spec, window, hop))
    return Dataset(np.concatenate(rows), feature_names(spec), spec, source, window)
