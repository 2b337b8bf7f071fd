"""The machine a sensor sits on, as the diagnosis needs it: `sensors[].machine` in config.yaml.

Defect frequencies are given as orders (multiples of the shaft frequency), so one description
holds at any speed. From the bearing geometry (n rolling elements of diameter d on pitch
diameter D, contact angle a), with r = d/D cos a [1]_:

    ftf  = (1 - r) / 2                 cage (fundamental train)
    bpfo = n/2 (1 - r)                 ball pass, outer race
    bpfi = n/2 (1 + r)                 ball pass, inner race
    bsf  = D/(2d) (1 - r^2)            ball spin

or from the maker's tables (SKF 6205: bpfo 3.585, bpfi 5.415, bsf 2.357, ftf 0.398).

References
----------
.. [1] R. B. Randall, J. Antoni, "Rolling element bearing diagnostics - A tutorial",
   Mechanical Systems and Signal Processing 25 (2011) 485-520, eqs. (1)-(4).
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

FAULTS = ("outer_race", "inner_race", "ball", "cage", "imbalance", "misalignment", "looseness", "unknown")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BearingOrders(_Section):
    """One rolling-element bearing: its defect frequencies in orders of the shaft speed."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64, description="e.g. de, nde")
    bpfo: float = Field(gt=0, le=100, description="ball pass frequency, outer race (orders)")
    bpfi: float = Field(gt=0, le=100, description="ball pass frequency, inner race (orders)")
    bsf: float = Field(gt=0, le=100, description="ball spin frequency (orders)")
    ftf: float = Field(gt=0, lt=1, description="fundamental train (cage) frequency (orders)")

    @model_validator(mode="after")
    def _outer_below_inner(self) -> BearingOrders:
        # n/2 (1 - r) < n/2 (1 + r) for every bearing (r > 0): swapped orders would name an
        # inner-race defect `outer_race` and the reverse, with full confidence
        if self.bpfo >= self.bpfi:
            raise ValueError(f"bpfo ({self.bpfo:g}) must be below bpfi ({self.bpfi:g}): "
                             f"BPFO = n/2 (1 - d/D cos a) < BPFI = n/2 (1 + d/D cos a); swapped?")
        return self


class MachineConfig(_Section):
    """`sensors[].machine`: shaft speed (`shaft_hz` or `rpm`, exactly one) and bearings."""

    shaft_hz: Optional[float] = Field(None, gt=0, le=1000, description="shaft rotation frequency, Hz")
    rpm: Optional[float] = Field(None, gt=0, le=60_000, description="shaft speed, rev/min (instead of shaft_hz)")
    bearings: list[BearingOrders] = Field(default_factory=list, description="bearings seen by this sensor")
    speed_tolerance: float = Field(0.05, ge=0, le=0.3, description="how far the running speed may be from the configured one (fraction)")
    axial_channel: Optional[str] = Field(None, min_length=1, description="the channel along the shaft (misalignment); none: judged on 2x alone")
    low_order_min_mm_s: float = Field(2.8, gt=0, description="shaft lines (1x, 2x, ...) count towards imbalance/misalignment/looseness from this velocity RMS")

    @model_validator(mode="after")
    def _one_speed(self) -> MachineConfig:
        if (self.shaft_hz is None) == (self.rpm is None):
            raise ValueError("give the shaft speed once: shaft_hz or rpm")
        names = [b.name for b in self.bearings]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate bearing name {dupes[0]!r}")
        return self

    def misfit(self, protocol: str | None, channels: list[str] | None,
               temperatures: list[str] | None = None) -> tuple[tuple, str] | None:
        """Why this machine cannot be diagnosed on a sensor with `protocol`, `channels` and
        `temperatures` (its temperature channels), as (key path relative to `machine`, message),
        or None when it fits."""
        if protocol == "modbus":  # diagnosis reads waveforms; a transmitter sends features
            return (), "fault diagnosis needs the waveform; a modbus transmitter sends features only"
        if self.axial_channel is not None and channels and self.axial_channel not in channels:
            return ("axial_channel",), f"'{self.axial_channel}' is not one of channels {channels}"
        if self.axial_channel is not None and self.axial_channel in (temperatures or ()):
            # the diagnosis reads vibration channels only: it would be ignored without a word
            return ("axial_channel",), (f"'{self.axial_channel}' is a temperature channel (temperature_channels "
                                        f"{temperatures}); the axial channel must be a vibration one")
        return None

    @property
    def shaft_frequency(self) -> float:
        """The configured shaft frequency in Hz."""
        return float(self.shaft_hz if self.shaft_hz is not None else self.rpm / 60.0)
