"""What a driver emits, and the contract every source keeps: the lowest layer's records.

A waveform source (lines, frames, sim) yields `Frame`s of raw samples; a value source (a Modbus
transmitter that computes its own condition values) yields `FeatureVector`s. A source says which
one in `kind`, so the pipeline picks its front end once instead of testing every item.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

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


class Source(Protocol):
    """What every driver's source does; tests/test_sources.py checks each registered protocol.

    - `kind` is WAVEFORM (read() returns Frame) or VALUES (read() returns FeatureVector); it never
      changes, so a consumer picks its front end once.
    - `read()` blocks for at most about a second and returns what arrived, or None when nothing did.
      It never raises on sensor trouble (a lost port is retried inside the source).
    - `online` tells whether the sensor is currently delivering.
    - `counters()` and `input_errors()` return plain dicts of numbers (input_errors: input dropped as
      invalid, by kind); both are safe to call from another thread at any time.
    - `close()` releases the port; it may be called twice.
    """

    sensor: str
    channels: tuple[str, ...]
    kind: str

    @property
    def online(self) -> bool: ...

    def read(self) -> Frame | FeatureVector | None: ...

    def counters(self) -> dict: ...

    def input_errors(self) -> dict: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PtyServer:
    """How `pdm-agent simulate --protocol <protocol>` plays a device of this protocol on a pty.

    `serve(link, *, rate, rpm, fault, fault_at, seed, duration, stop, **options) -> exit code`
    makes `link` a symlink to a new pseudo-terminal and serves drivers/simulator.Machine on it
    (`rate` in Hz and `rpm` matter to waveform protocols; `fault` starts `fault_at` seconds after
    start) until `stop` (a threading.Event) is set, `duration` seconds have passed or SIGTERM/SIGINT
    arrives. It returns 0 when stopped, 1 when the link cannot be made, 2 for invalid usage.
    `add_arguments(parser)` adds the protocol's own `simulate` options to an argparse parser and
    returns their destination names; `serve` receives them as the keyword `options`.
    """

    serve: Callable[..., int]
    add_arguments: Callable[[Any], tuple[str, ...]] = lambda parser: ()


@dataclass(frozen=True)
class Driver:
    """One protocol, registered by the module that implements it (`register`).

    `open(sensor_cfg, log) -> Source` builds the source a sensor's configuration asks for (the
    configuration object has at least `name`, `channels`, `sample_rate`, `port`, `baudrate` and the
    protocol's own keys). `settings` is the pydantic model of the protocol's own keys, with
    ``protocol: Literal["<protocol>"]`` (drivers/config.Section; agent/sensor_config.py composes it
    with the keys every sensor has). `cadence_s(sensor_cfg)` is the seconds between two readings of a VALUES
    source (None for a waveform: the window hop decides); `value_ranges(sensor_cfg)` maps value
    names to their physical (lo, hi) range when the device documents one. `needs_port` is False for
    protocols that read no device (the in-process simulator). `pty_server` plays the protocol's
    device for `pdm-agent simulate`; None for a protocol that has no simulated device on a pty.
    """

    protocol: str
    kind: str
    open: Callable[[Any, Any], Source]
    settings: type | None = None
    needs_port: bool = True
    cadence_s: Callable[[Any], float | None] = lambda sensor_cfg: None
    value_ranges: Callable[[Any], dict] = lambda sensor_cfg: {}
    # What a saved baseline was learned on, besides the features. The default is what baselines
    # saved before the registry carry for a protocol without a register map, so they stay valid.
    baseline_key: Callable[[Any], list[str]] = lambda sensor_cfg: ["preset=None", "registers=[]"]
    # The feature names a VALUES source reports, in order, when its config says them (a register
    # map); None: the waveform features of the sensor's channels (models/features.py).
    value_names: Callable[[Any], list[str] | None] = lambda sensor_cfg: None
    pty_server: PtyServer | None = None


REGISTRY: dict[str, Driver] = {}
# The protocols shipped with the agent: protocol -> the module that registers it. `sensors[]` offers
# exactly these (agent/sensor_config.py builds one config model per entry when it is imported), so a
# new protocol is its module, its line here and its case in tests/test_sources.py (which fails for a
# module that registers a protocol missing here), and its keys documented in config.yaml. The modules
# are light to import: heavy ones such as pymodbus are imported only when a source is opened. A
# protocol registered from outside this list can be opened (open_source) but not configured.
BUILTIN = {"lines": "drivers.lines", "frames": "drivers.frames", "modbus": "drivers.modbus", "sim": "drivers.sim"}


def register(driver: Driver) -> Driver:
    """Make `driver.protocol` available to `driver_for`; registering a protocol twice replaces it."""
    if driver.kind not in (WAVEFORM, VALUES):
        raise ValueError(f"driver {driver.protocol!r}: kind must be {WAVEFORM!r} or {VALUES!r}, not {driver.kind!r}")
    REGISTRY[driver.protocol] = driver
    return driver


def driver_for(protocol: str) -> Driver:
    """The registered driver of `protocol`; ValueError naming the known ones if there is none."""
    if protocol not in REGISTRY and protocol in BUILTIN:
        importlib.import_module(BUILTIN[protocol])
    try:
        return REGISTRY[protocol]
    except KeyError:
        known = sorted(set(REGISTRY) | set(BUILTIN))
        raise ValueError(f"unknown protocol {protocol!r} (available: {', '.join(known)})") from None


def pty_servers() -> dict[str, PtyServer]:
    """Every protocol whose device `pdm-agent simulate` can play, the shipped ones first."""
    for module in BUILTIN.values():
        importlib.import_module(module)
    order = list(BUILTIN) + sorted(set(REGISTRY) - set(BUILTIN))
    return {p: REGISTRY[p].pty_server for p in order if REGISTRY[p].pty_server is not None}


def open_source(sensor_cfg, log=None) -> Source:
    """Build the source a sensor's configuration asks for, through its protocol's driver."""
    return driver_for(sensor_cfg.protocol).open(sensor_cfg, log)
