"""A sensor's configuration (documented in config.yaml): the keys every sensor has, composed with
its protocol's own keys (drivers/base.Driver.settings) into one model per protocol. `sensors[]` is a
union discriminated by `protocol` (default `lines`), so a key of another protocol is an error
(a `lines` sensor with `slave_id`), while an unknown protocol is reported as such with the other
keys still checked. agent/config.py drops the union's tag from error paths (`sensors[0].slave_id`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, Discriminator, Field, Tag, ValidationInfo, create_model, field_validator, model_validator

from agent import config_rules as R
from drivers.base import BUILTIN, driver_for
from drivers.config import Name, Section, rule as _rule
from models.feature_rules import DEFAULT_BANDS, default_bands, temperature_channels  # noqa: F401 (DEFAULT_BANDS re-exported)

__all__ = ["AlertsConfig", "Band", "DEFAULT_BANDS", "DetectorConfig", "HealthSection", "IsoSection", "SENSOR_MODELS",
           "SensorConfig", "SensorEntry", "WindowConfig", "parse_sensor"]

PROTOCOLS = tuple(BUILTIN)  # in config.yaml's order: lines, frames, modbus, sim
DEFAULT_PROTOCOL = "lines"


def _scalar(value: Any) -> Any:
    # One clear message instead of pydantic's four union-member errors.
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError("must be a number, a string or a boolean")
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]


class WindowConfig(Section):
    """Analysis windows of a waveform sensor: size and hop in samples."""

    size: int = Field(4096, ge=64, le=1 << 20, description="samples per analysis window")
    hop: Optional[int] = Field(None, ge=1, description="samples between window starts; default = size")

    @model_validator(mode="before")
    @classmethod
    def _default_hop(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("hop") is None:
            size = data.get("size", 4096)
            if isinstance(size, int) and not isinstance(size, bool):
                data = {**data, "hop": size}
        return data

    @model_validator(mode="after")
    def _hop_within(self) -> WindowConfig:
        if self.hop is not None and self.hop > self.size:
            raise _rule(("hop",), f"must be <= size ({self.size}); windows would skip samples")
        return self


class DetectorConfig(Section):
    """The anomaly detector of a sensor (models/registry.py), its baseline learning and adaptation, or a signed bundle."""

    learn_seconds: float = Field(3600, gt=0, le=R.LEARN_SECONDS_MAX, description="healthy baseline learned before alerting")
    type: str = Field("auto", min_length=1, description="detector name from the registry, or auto")
    adapt_half_life_s: Optional[float] = Field(86400.0, gt=0, le=R.HALF_LIFE_MAX_S, description="slow adaptation; null = freeze")
    params: dict[str, Scalar] = Field(default_factory=dict, description="detector-specific settings")
    bundle: Optional[Path] = Field(None, description="signed model bundle to load instead of learning")

    @model_validator(mode="after")
    def _known_detector(self) -> DetectorConfig:
        # Checked here, not when the pipeline is built: `config check`, `config edit` and a
        # SIGHUP reload must refuse what the agent could not run.
        from models import registry

        try:
            registry.create(self.type, **dict(self.params))
        except ValueError as exc:
            at = "type" if str(exc).startswith("unknown detector") else "params"
            raise _rule((at,), str(exc)) from None
        except TypeError as exc:
            raise _rule(("params",), f"invalid detector parameters: {exc}") from None
        return self


class AlertsConfig(Section):
    """Score thresholds of warning and alarm, n-of-m debounce and hysteresis (agent/policy.py)."""

    warning: float = Field(0.5, gt=0, le=1, description="score threshold for a warning")
    alarm: float = Field(0.9, gt=0, le=1, description="score threshold for an alarm")
    debounce_n: int = Field(3, ge=1, description="raise when n of the last m scores cross")
    debounce_m: int = Field(5, ge=1)
    hysteresis: float = Field(0.1, ge=0, description="clear only below threshold - hysteresis")

    @model_validator(mode="after")
    def _ordered(self) -> AlertsConfig:
        if self.warning >= self.alarm:
            raise _rule(("warning",), f"must be < alarm ({self.alarm})")
        if self.debounce_n > self.debounce_m:
            raise _rule(("debounce_n",), f"must be <= debounce_m ({self.debounce_m})")
        if self.hysteresis >= self.warning:
            raise _rule(("hysteresis",), f"must be < warning ({self.warning}), or alerts could never clear")
        return self


Band = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]]


class IsoSection(Section):
    """ISO 10816-3 velocity zones (agent/iso10816.py)."""

    enabled: bool = True
    machine_class: Literal["group1-rigid", "group1-flexible", "group2-rigid", "group2-flexible"] = "group2-rigid"
    boundaries: Optional[tuple[float, float, float]] = Field(
        None, description="A/B, B/C, C/D in mm/s; default from machine_class (group2-rigid: 1.4, 2.8, 4.5)"
    )
    debounce_n: int = Field(2, ge=1, description="consecutive readings in a zone before its alert")
    hysteresis: float = Field(0.1, ge=0, lt=1, description="leave a zone only below boundary*(1-hysteresis)")

    @model_validator(mode="after")
    def _ordered(self) -> IsoSection:
        if self.boundaries is not None and not 0 < self.boundaries[0] < self.boundaries[1] < self.boundaries[2]:
            raise _rule(("boundaries",), "must be increasing and positive: [A/B, B/C, C/D] mm/s")
        return self

    def effective_boundaries(self) -> tuple[float, float, float]:
        from agent.iso10816 import CLASSES

        return tuple(self.boundaries) if self.boundaries is not None else CLASSES[self.machine_class]


class HealthSection(Section):
    """Sensor health (agent/sensor_health.py), reported in the status topic."""

    offline_after_s: Optional[float] = Field(None, gt=0, le=R.OFFLINE_AFTER_MAX_S, description="no data this long: offline, and a sensor_offline alarm; default max(10, 3 window hops or polls)")
    stuck_after_s: float = Field(600, gt=0, le=R.STUCK_AFTER_MAX_S, description="a value unchanged this long is 'stuck'")


class SensorConfig(Section):
    """The keys every sensor has; `sensors[]` holds one of SENSOR_MODELS (this plus its protocol's keys)."""

    name: Name
    port: Optional[str] = Field(None, min_length=1, description="device path or pyserial URL; none for sim")
    baudrate: int = Field(115200, gt=0)
    protocol: Literal[PROTOCOLS] = Field(DEFAULT_PROTOCOL, validate_default=True)
    sample_rate: float = Field(1000, gt=0, le=1_000_000, description="Hz")
    channels: list[Name] = Field(default_factory=lambda: ["ax", "ay", "az", "temp"], min_length=1)
    temperature_channels: list[str] = Field(
        default_factory=list, description="default: the channels named temp or temp*"
    )
    window: WindowConfig = Field(default_factory=WindowConfig)
    bands: list[Band] = Field(
        default_factory=list, description="[lo, hi] Hz; default: standard bands clipped to Nyquist"
    )
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    iso10816: IsoSection = Field(default_factory=IsoSection)
    health: HealthSection = Field(default_factory=HealthSection)

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_siblings(cls, data: Any) -> Any:
        """Fill defaults that depend on other keys, only when the operator left them out."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        channels = data.get("channels", ["ax", "ay", "az", "temp"])
        if data.get("temperature_channels") is None and isinstance(channels, list):
            data["temperature_channels"] = list(temperature_channels(channels))
        rate = data.get("sample_rate", 1000)
        if data.get("bands") is None and isinstance(rate, (int, float)) and rate > 0:
            # Default bands are clipped to Nyquist: a default must never be an error.
            data["bands"] = [list(band) for band in default_bands(rate)]
        return data

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[str]) -> list[str]:
        seen = set()
        for i, c in enumerate(channels):
            if c in seen:
                raise _rule((i,), f"duplicate channel '{c}'")
            seen.add(c)
        return channels

    @field_validator("temperature_channels")
    @classmethod
    def _subset(cls, names: list[str], info: ValidationInfo) -> list[str]:
        channels = info.data.get("channels")
        for i, c in enumerate(names):
            if channels is not None and c not in channels:
                raise _rule((i,), f"'{c}' is not one of channels {channels}")
        return names

    @field_validator("bands")
    @classmethod
    def _below_nyquist(cls, bands: list[tuple[float, float]], info: ValidationInfo) -> list:
        # A field validator (not a model one) so these are reported along with unrelated errors.
        nyquist = info.data["sample_rate"] / 2 if "sample_rate" in info.data else float("inf")
        for i, (lo, hi) in enumerate(bands):
            if lo >= hi:
                raise _rule((i,), f"band {i} [{lo:g}, {hi:g}] Hz: lo must be < hi")
            if hi > nyquist:
                raise _rule(
                    (i,), f"band {i} [{lo:g}, {hi:g}] Hz: hi must be <= sample_rate/2 = {nyquist:g} Hz"
                )
        return bands

    @field_validator("protocol")
    @classmethod
    def _port_needed(cls, protocol: str, info: ValidationInfo) -> str:
        if driver_for(protocol).needs_port and info.data.get("port", "") is None:
            portless = " and ".join(f"'{p}'" for p in PROTOCOLS if not driver_for(p).needs_port)
            raise _rule(("..", "port"), f"required for protocol '{protocol}' (only {portless} needs no port)")
        return protocol


def _variant(protocol: str) -> type[SensorConfig]:
    settings = driver_for(protocol).settings
    name = f"{protocol.capitalize()}SensorConfig"
    if settings is None:
        return create_model(name, __base__=SensorConfig, protocol=(Literal[protocol], Field(protocol, validate_default=True)))
    # The protocol's keys after the shared ones; `protocol` keeps its place (port is checked first).
    return type(name, (settings, SensorConfig), {"__module__": __name__, "__doc__": settings.__doc__})


SENSOR_MODELS: dict[str, type[SensorConfig]] = {p: _variant(p) for p in PROTOCOLS}
UNKNOWN = "?"  # the tag of a sensor whose protocol is none of these: checked as UnknownProtocolSensor


def protocols_with(key: str) -> list[str]:
    """The protocols that have `key` as one of their own keys (`slave_id` -> ['modbus']); [] for a key
    every sensor has or none has."""
    return [p for p, model in SENSOR_MODELS.items() if key in model.model_fields and key not in SensorConfig.model_fields]


class UnknownProtocolSensor(SensorConfig):
    """A sensor whose `protocol` is none of PROTOCOLS (a typo such as `modbsu`): the protocol is the
    error. Keys of a known protocol are not reported too (they are likely right for the protocol
    meant); every other key is still checked."""

    @model_validator(mode="before")
    @classmethod
    def _without_protocol_keys(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if not protocols_with(k)} if isinstance(data, dict) else data


def _tag(data: Any) -> str:
    protocol = data.get("protocol", DEFAULT_PROTOCOL) if isinstance(data, dict) else getattr(data, "protocol", None)
    return protocol if isinstance(protocol, str) and protocol in SENSOR_MODELS else UNKNOWN


SensorEntry = Annotated[
    Union[tuple(Annotated[m, Tag(p)] for p, m in SENSOR_MODELS.items()) + (Annotated[UnknownProtocolSensor, Tag(UNKNOWN)],)],
    Discriminator(_tag),
]


def parse_sensor(data: dict | None = None, /, **keys) -> SensorConfig:
    """One `sensors[]` entry validated as the configuration file is (pydantic.ValidationError if not),
    e.g. ``parse_sensor(name="p", protocol="sim")``: the model of its protocol."""
    from pydantic import TypeAdapter

    return TypeAdapter(SensorEntry).validate_python({**(data or {}), **keys})
