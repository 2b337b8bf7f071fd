"""Register maps of real Modbus vibration transmitters (`preset:` in a modbus sensor's config).

Register numbers follow the Modicon convention: 4xxxx holding registers (function 03),
3xxxx input registers (function 04); holding register 45201 is protocol address 5200.
Feature names follow the waveform features (`<axis>.velocity_rms_mm_s`, `temp.mean_c`, ...), so
the ISO 10816 check, health ranges and dashboards treat both kinds of sensors alike.
docs/modbus.md has the tables with their sources and what is uncertain about them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

TYPES = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2, "float32": 2}  # type -> registers


@dataclass(frozen=True, slots=True)
class Register:
    """One value in a device's register map.

    >>> r = Register("z.velocity_rms_mm_s", 45202, scale=0.001, unit="mm/s")
    >>> r.table, r.address, r.count
    ('holding', 5201, 1)
    """

    name: str  # feature name, "<channel>.<feature>"
    number: int  # Modicon register number (45201, 30001, 400001 ...)
    type: str = "uint16"
    scale: float = 1.0
    unit: str = ""
    range: tuple[float, float] | None = None  # physically possible values; outside = sensor fault
    sim: float = 0.0  # what the simulated slave reports for a healthy machine (physical units)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"register {self.name}: type must be one of {sorted(TYPES)}, not {self.type!r}")
        modicon(self.number)  # raises on a number outside the convention

    @property
    def table(self) -> str:
        return modicon(self.number)[0]

    @property
    def address(self) -> int:
        return modicon(self.number)[1]

    @property
    def count(self) -> int:
        return TYPES[self.type]


def modicon(number: int) -> tuple[str, int]:
    """Modicon register number -> (table, protocol address).

    >>> modicon(45201), modicon(30001), modicon(400059)
    (('holding', 5200), ('input', 0), ('holding', 58))
    """
    for lo, hi, base, table in (
        (40001, 49999, 40001, "holding"), (30001, 39999, 30001, "input"),
        (400001, 465536, 400001, "holding"), (300001, 365536, 300001, "input"),
    ):
        if lo <= number <= hi:
            return table, number - base
    raise ValueError(
        f"register {number} is not a Modicon holding (40001-49999, 400001-465536) "
        "or input (30001-39999, 300001-365536) register number"
    )


@dataclass(frozen=True, slots=True)
class Preset:
    """A transmitter model's register map and factory serial settings."""

    name: str
    title: str
    baudrate: int
    slave_id: int
    parity: str
    registers: tuple[Register, ...]
    source: str
    notes: tuple[str, ...] = field(default=())


def _axes(axes: str, number: dict[str, int], feature: str, **kw) -> list[Register]:
    return [Register(f"{a}.{feature}", number[a], **kw) for a in axes]


# Banner QM30VT2: the "alias" block 45201-45222 gathers every measurement in one read.
# Source: Banner Engineering's QM30VT2 instruction manual / datasheet, Modbus register table
# (block 45201-45222), as implemented in Golioth's Zephyr driver
# golioth/reference-design-modbus-vibration-monitor src/qm30vt2.[ch] (offsets and scales used here).
# 45201/45205/45217/45219 (in/s, /10000) and 45203 (deg F) duplicate the metric ones: not mapped.
QM30VT2 = Preset(
    name="qm30vt2",
    title="Banner QM30VT2 vibration and temperature sensor",
    baudrate=19200,
    slave_id=1,
    parity="N",
    source="Banner QM30VT2 manual, Modbus holding registers 45201-45222 (via golioth/reference-design-modbus-vibration-monitor)",
    registers=(
        Register("z.velocity_rms_mm_s", 45202, scale=0.001, unit="mm/s", range=(0, 65.535), sim=1.2),
        Register("temp.mean_c", 45204, "int16", scale=0.01, unit="degC", range=(-40, 105), sim=35.0),
        Register("x.velocity_rms_mm_s", 45206, scale=0.001, unit="mm/s", range=(0, 65.535), sim=0.9),
        Register("z.peak_g", 45207, scale=0.001, unit="g", range=(0, 65.535), sim=0.35),
        Register("x.peak_g", 45208, scale=0.001, unit="g", range=(0, 65.535), sim=0.3),
        Register("z.velocity_peak_freq_hz", 45209, scale=0.1, unit="Hz", range=(0, 6553.5), sim=29.7),
        Register("x.velocity_peak_freq_hz", 45210, scale=0.1, unit="Hz", range=(0, 6553.5), sim=29.7),
        Register("z.rms_g", 45211, scale=0.001, unit="g", range=(0, 65.535), sim=0.1),
        Register("x.rms_g", 45212, scale=0.001, unit="g", range=(0, 65.535), sim=0.09),
        Register("z.kurtosis", 45213, scale=0.001, range=(0, 65.535), sim=3.0),
        Register("x.kurtosis", 45214, scale=0.001, range=(0, 65.535), sim=3.0),
        Register("z.crest_factor", 45215, scale=0.001, range=(0, 65.535), sim=3.4),
        Register("x.crest_factor", 45216, scale=0.001, range=(0, 65.535), sim=3.3),
        Register("z.velocity_peak_mm_s", 45218, scale=0.001, unit="mm/s", range=(0, 65.535), sim=1.7),
        Register("x.velocity_peak_mm_s", 45220, scale=0.001, unit="mm/s", range=(0, 65.535), sim=1.3),
        Register("z.hf_rms_g", 45221, scale=0.001, unit="g", range=(0, 65.535), sim=0.05),
        Register("x.hf_rms_g", 45222, scale=0.001, unit="g", range=(0, 65.535), sim=0.04),
    ),
    notes=(
        "factory default 19200 baud 8N1, slave id 1 (as documented by Banner; check your unit)",
        "45201/45205/45217/45219 give the same velocities in in/s (/10000), 45203 the temperature in degF",
    ),
)

# WitMotion WTVB01-485: holding registers, one per value, at protocol addresses 0x34-0x46.
# Source: WitMotion "WTVB01-485 Vibration Sensor User Manual" v2.5-05-06, section 6.3-6.4.
_W = {"x": 0, "y": 1, "z": 2}
WTVB01 = Preset(
    name="wtvb01",
    title="WitMotion WTVB01-485 vibration sensor",
    baudrate=9600,
    slave_id=0x50,
    parity="N",
    source="WitMotion WTVB01-485 Vibration Sensor User Manual v2.5-05-06, section 6 (registers 0x34-0x46)",
    registers=tuple(
        _axes("xyz", {a: 40053 + i for a, i in _W.items()}, "acceleration_g", type="int16",
              scale=16 / 32768, unit="g", range=(-16, 16), sim=0.0)
        + _axes("xyz", {a: 40059 + i for a, i in _W.items()}, "velocity_rms_mm_s", scale=1.0,
                unit="mm/s", range=(0, 100), sim=1.0)
        + [Register("temp.mean_c", 40065, "int16", scale=0.01, unit="degC", range=(-40, 85), sim=31.5)]
        + _axes("xyz", {a: 40066 + i for a, i in _W.items()}, "displacement_um", scale=1.0, unit="um",
                range=(0, 30000), sim=12.0)
        + _axes("xyz", {a: 40069 + i for a, i in _W.items()}, "frequency_hz", scale=0.1, unit="Hz",
                range=(0, 6553.5), sim=29.7)
    ),
    notes=(
        "factory default 9600 baud 8N1, address 0x50 (80)",
        "velocity is documented in whole mm/s (no scale): resolution 1 mm/s",
        "the manual calls it 'vibration speed'; it is treated as the RMS velocity for ISO 10816",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (QM30VT2, WTVB01)}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or ValueError naming the known ones (with a did-you-mean).

    >>> get_preset("qm30vt2").slave_id
    1
    >>> get_preset("qm30tv2")
    Traceback (most recent call last):
    ...
    ValueError: unknown preset 'qm30tv2'; did you mean 'qm30vt2'? (known: qm30vt2, wtvb01)
    """
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name.lower(), PRESETS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown preset '{name}'{hint} (known: {', '.join(PRESETS)})")
