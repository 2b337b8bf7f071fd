"""The configuration's sections as pydantic models (documented in config.yaml); agent/config.py loads them.

One model per section, ``extra="forbid"`` and frozen, constraints in ``Field(...)``, cross-field
rules in validators that name the exact key they are about (``_rule``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agent import config_rules as R

__all__ = [
    "AggregatesConfig",
    "AlertsConfig",
    "CREDENTIAL_NAME",
    "Config",
    "DEFAULT_BANDS",
    "DEFAULT_STATE_DIR",
    "DetectorConfig",
    "DeviceConfig",
    "HealthSection",
    "HomeAssistantConfig",
    "IsoSection",
    "LoggingConfig",
    "ModelsConfig",
    "MqttConfig",
    "NAME_PATTERN",
    "PATTERN_WORDS",
    "RegisterConfig",
    "Section",
    "SensorConfig",
    "SimulatorConfig",
    "StorageConfig",
    "TOPIC_PATTERN",
    "TlsConfig",
    "WindowConfig",
]

DEFAULT_STATE_DIR = "/var/lib/pdm-agent"
CREDENTIAL_NAME = "mqtt-password"  # systemd: LoadCredential=mqtt-password:/path/to/file
DEFAULT_BANDS = ((10.0, 100.0), (100.0, 500.0), (500.0, 1000.0), (1000.0, 2000.0))
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
TOPIC_PATTERN = r"^[^#+/]+(/[^#+/]+)*$"
PATTERN_WORDS = {  # regexes are not operator language
    NAME_PATTERN: "may contain only letters, digits, '_' and '-'",
    TOPIC_PATTERN: "must not contain '+' or '#', nor start or end with '/'",
}

Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=64)]


def _rule(at: tuple, message: str) -> PydanticCustomError:
    """A cross-field error located at `at`, relative to the loc of the validator that raises it
    ("..": one level up): validators only know their own loc, the operator needs the exact key."""
    return PydanticCustomError("config_rule", message.replace("{", "(").replace("}", ")"), {"at": at})


def _scalar(value: Any) -> Any:
    # One clear message instead of pydantic's four union-member errors.
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError("must be a number, a string or a boolean")
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .nan/.inf: never a setting


class DeviceConfig(Section):
    id: Name = Field(description="Gateway id, part of every MQTT topic")


class TlsConfig(Section):
    ca_file: Optional[Path] = Field(None, description="CA bundle; null = system CAs")
    cert_file: Optional[Path] = Field(None, description="client certificate (mutual TLS)")
    key_file: Optional[Path] = Field(None, description="client private key (mutual TLS)")
    insecure: bool = Field(False, description="skip hostname verification (testing only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            raise _rule((missing,), "cert_file and key_file go together; set both or neither")
        return self


class MqttConfig(Section):
    host: Annotated[str, AfterValidator(R.host_name)] = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    client_id: Annotated[Optional[str], AfterValidator(R.usable_client_id)] = Field(
        None, min_length=1, description="default: pdm-agent-<device.id>")
    username: Optional[str] = None
    password_file: Optional[Path] = Field(
        None, description="file holding the broker password; default: $CREDENTIALS_DIRECTORY/mqtt-password"
    )
    tls: Optional[TlsConfig] = None
    topic_prefix: Annotated[str, AfterValidator(R.deliverable_topic)] = Field(
        "pdm", pattern=TOPIC_PATTERN, description="no wildcards, no edge '/', no leading '$', no control characters")
    keepalive: int = Field(30, ge=1, le=65535, description="seconds")
    reconnect_min_s: float = Field(1.0, gt=0, le=R.RECONNECT_MAX_S)
    reconnect_max_s: float = Field(60.0, gt=0, le=R.RECONNECT_MAX_S)
    max_inflight: int = Field(20, ge=1, le=65535)
    status_interval_s: float = Field(30.0, ge=R.STATUS_INTERVAL_MIN_S, le=R.STATUS_INTERVAL_MAX_S)
    max_packet_bytes: Optional[int] = Field(
        None, ge=512, le=268_435_455, description="the broker's packet limit; larger messages are set aside, not sent"
    )
    commands: bool = Field(False, description="accept signed remote commands (model push) on P/D/cmd/+ (docs/fleet.md)")
    command_max_age_s: float = Field(300.0, ge=10, le=86_400, description="older commands are refused (replay window)")
    command_max_bytes: int = Field(16 * 2**20, ge=4096, le=268_435_455, description="larger commands are refused")

    _device_id: str = PrivateAttr(default="")  # set by Config, for effective_client_id

    @model_validator(mode="after")
    def _backoff(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise _rule(("reconnect_max_s",), f"must be >= reconnect_min_s ({self.reconnect_min_s})")
        return self

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"pdm-agent-{self._device_id or 'unnamed'}"

    def password(self) -> Optional[str]:
        """The broker password from `password_file` (environment variables expanded, so
        `${CREDENTIALS_DIRECTORY}/x` works), else the systemd credential `mqtt-password`,
        else None. Read when connecting, so a rotated secret is picked up on reconnect."""
        if self.password_file is not None:
            path = Path(os.path.expandvars(os.path.expanduser(str(self.password_file))))
        elif os.environ.get("CREDENTIALS_DIRECTORY"):
            path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
            if not path.is_file():
                return None
        else:
            return None
        # An empty file means no password: the installer ships the credential file empty.
        return path.read_text(encoding="utf-8").rstrip("\r\n") or None


def _state_dir() -> Path:
    # systemd's StateDirectory= may list several directories, colon-separated: the first is ours.
    env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(env or DEFAULT_STATE_DIR)


class StorageConfig(Section):
    dir: Path = Field(
        default_factory=_state_dir,
        description="outbox and learned state; default $STATE_DIRECTORY, else /var/lib/pdm-agent",
        json_schema_extra={"default": DEFAULT_STATE_DIR},
    )
    max_outbox_mb: float = Field(64, gt=0, le=R.OUTBOX_MB_MAX, description="disk bound for messages buffered while offline")


class WindowConfig(Section):
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


class SimulatorConfig(Section):
    rpm: float = Field(1780, gt=0, description="shaft speed")
    fault: Optional[Literal["outer-race", "inner-race", "imbalance", "overheat"]] = None
    fault_at: float = Field(120.0, ge=0, description="seconds after start when the fault begins")
    seed: int = 0


class DetectorConfig(Section):
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


class RegisterConfig(Section):
    """One Modbus register to poll (adds to, or by name replaces, the preset's map)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_]+$", description="feature name <channel>.<feature>")
    number: int = Field(description="Modicon register number: 4xxxx/4xxxxx holding, 3xxxx/3xxxxx input")
    type: Literal["uint16", "int16", "uint32", "int32", "float32"] = "uint16"
    scale: float = Field(1.0, description="value = raw * scale")
    unit: str = ""
    range: Optional[tuple[float, float]] = Field(None, description="physically possible [min, max]")

    @field_validator("number")
    @classmethod
    def _modicon(cls, number: int) -> int:
        from drivers.presets import modicon

        try:
            modicon(number)
        except ValueError as exc:
            raise _rule((), str(exc)) from None
        return number


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
    name: Name
    port: Optional[str] = Field(None, min_length=1, description="device path or pyserial URL; none for sim")
    baudrate: int = Field(115200, gt=0)
    protocol: Literal["lines", "frames", "modbus", "sim"] = Field("lines", validate_default=True)
    sample_rate: float = Field(1000, gt=0, le=1_000_000, description="Hz")
    channels: list[Name] = Field(default_factory=lambda: ["ax", "ay", "az", "temp"], min_length=1)
    temperature_channels: list[str] = Field(
        default_factory=list, description="default: the channels named temp or temp*"
    )
    window: WindowConfig = Field(default_factory=WindowConfig)
    bands: list[Band] = Field(
        default_factory=list, description="[lo, hi] Hz; default: standard bands clipped to Nyquist"
    )
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    preset: Optional[str] = Field(None, description="modbus: device model, e.g. qm30vt2")
    slave_id: int = Field(1, ge=1, le=247, description="modbus unit id")
    poll_interval: float = Field(1.0, ge=R.POLL_INTERVAL_MIN_S, le=R.DAY_S, description="modbus: seconds between polls")
    parity: Literal["N", "E", "O"] = Field("N", description="modbus RTU: N, E or O")
    timeout: float = Field(1.0, gt=0, le=R.MODBUS_TIMEOUT_MAX_S, description="modbus: seconds to wait for each reply")
    retries: int = Field(2, ge=0, le=10, description="modbus: re-sends before a poll counts as failed")
    word_order: Literal["big", "little"] = Field("big", description="modbus 32-bit values: high word first?")
    registers: list[RegisterConfig] = Field(default_factory=list, description="modbus: extra/overriding registers")
    iso10816: IsoSection = Field(default_factory=IsoSection)
    health: HealthSection = Field(default_factory=HealthSection)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: Optional[str]) -> Optional[str]:
        from drivers.presets import get_preset

        if preset is not None:
            try:
                get_preset(preset)
            except ValueError as exc:
                raise _rule((), str(exc)) from None
        return preset

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        """A preset brings its device's factory line settings unless the operator set them."""
        from drivers.presets import PRESETS

        if isinstance(data, dict) and data.get("protocol") == "modbus" and data.get("preset") in PRESETS:
            preset = PRESETS[data["preset"]]
            data = {"baudrate": preset.baudrate, "slave_id": preset.slave_id, "parity": preset.parity, **data}
        return data

    @model_validator(mode="after")
    def _modbus_needs_a_map(self) -> SensorConfig:
        if self.protocol == "modbus" and self.preset is None and not self.registers:
            raise _rule(("preset",), "a modbus sensor needs a preset (qm30vt2, wtvb01) or registers")
        return self

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_siblings(cls, data: Any) -> Any:
        """Fill defaults that depend on other keys, only when the operator left them out."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        channels = data.get("channels", ["ax", "ay", "az", "temp"])
        if data.get("temperature_channels") is None and isinstance(channels, list):
            temps = [c for c in channels if isinstance(c, str) and c.startswith("temp")]
            data["temperature_channels"] = temps
        rate = data.get("sample_rate", 1000)
        if data.get("bands") is None and isinstance(rate, (int, float)) and rate > 0:
            # Default bands are clipped to Nyquist: a default must never be an error.
            nyquist = rate / 2
            data["bands"] = [[lo, min(hi, nyquist)] for lo, hi in DEFAULT_BANDS if lo < nyquist]
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
        if protocol != "sim" and info.data.get("port", "") is None:
            raise _rule(("..", "port"), f"required for protocol '{protocol}' (only 'sim' needs no port)")
        return protocol


class AggregatesConfig(Section):
    interval: float = Field(60, ge=R.AGGREGATE_INTERVAL_MIN_S, le=86_400, description="seconds per published aggregate")
    features: Optional[list[Annotated[str, Field(min_length=1)]]] = Field(
        None, min_length=1, description="feature names or patterns (*.rms_g) to publish; null = all; score always")


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto = console on a TTY, else JSON"
    )


class HomeAssistantConfig(Section):
    enabled: bool = Field(False, description="publish Home Assistant MQTT discovery (retained) for this device")
    discovery_prefix: Annotated[str, AfterValidator(R.deliverable_topic)] = Field("homeassistant", pattern=TOPIC_PATTERN, description="Home Assistant's discovery prefix")


class ModelsConfig(Section):
    trusted_keys: list[Path] = Field(default_factory=list, description="Ed25519 public keys for bundles")
    watch_interval_s: float = Field(2.0, gt=0, le=R.WATCH_INTERVAL_MAX_S, description="how often bundle paths are checked for a new bundle")


class Config(Section):
    """The whole configuration file."""

    device: DeviceConfig
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    sensors: list[SensorConfig] = Field(min_length=1)
    aggregates: AggregatesConfig = Field(default_factory=AggregatesConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)

    @model_validator(mode="after")
    def _across_sensors(self) -> Config:
        first: dict[str, int] = {}
        for i, sensor in enumerate(self.sensors):
            if sensor.name in first:
                where = f"sensors[{first[sensor.name]}]"
                raise _rule(("sensors", i, "name"), f"duplicate sensor name '{sensor.name}' (also {where})")
            first[sensor.name] = i
            if sensor.name == "cmd":  # P/D/cmd/... carries commands (docs/fleet.md)
                raise _rule(("sensors", i, "name"), "'cmd' is reserved for the command topics P/D/cmd/...")
            if sensor.detector.bundle is not None and not self.models.trusted_keys:
                raise _rule(
                    ("sensors", i, "detector", "bundle"),
                    "bundles are verified before loading: list their public keys in models.trusted_keys",
                )
        if self.mqtt.commands and not self.models.trusted_keys:
            raise _rule(("mqtt", "commands"), "commands are verified first: list their public keys in models.trusted_keys")
        self.mqtt._device_id = self.device.id
        return self
