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
from agent.sensor_config import *  # noqa: F403 - the sensor sections are part of this module's API
from agent.sensor_config import SensorEntry
from drivers.config import NAME_PATTERN, Name as _Name, Section, rule
from drivers.sim import SimulatorConfig  # noqa: F401 (documented with the sections)
from drivers.modbus_config import RegisterConfig  # noqa: F401
from models.feature_rules import DEFAULT_BANDS, default_bands, temperature_channels  # noqa: F401 (DEFAULT_BANDS re-exported)

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
    "SENSOR_MODELS",
    "SensorConfig",
    "SensorEntry",
    "SimulatorConfig",
    "StorageConfig",
    "TOPIC_PATTERN",
    "TlsConfig",
    "WindowConfig",
    "parse_sensor",
]

DEFAULT_STATE_DIR = "/var/lib/pdm-agent"
CREDENTIAL_NAME = "mqtt-password"  # systemd: LoadCredential=mqtt-password:/path/to/file
TOPIC_PATTERN = r"^[^#+/]+(/[^#+/]+)*$"
PATTERN_WORDS = {  # regexes are not operator language
    NAME_PATTERN: "may contain only letters, digits, '_' and '-'",
    TOPIC_PATTERN: "must not contain '+' or '#', nor start or end with '/'",
}

Name = _Name
_rule = rule



class DeviceConfig(Section):
    """This gateway: its id names it in every topic."""

    id: Name = Field(description="Gateway id, part of every MQTT topic")


class TlsConfig(Section):
    """TLS to the broker: CA, optional client certificate and key (paths on the gateway)."""

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
    """The broker: address, credentials (password_file or systemd credential), topics, QoS and reconnect settings."""

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

    _device_id: str = PrivateAttr(default="")  # set by Config, for effective_client_id

    @model_validator(mode="after")
    def _backoff(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise _rule(("reconnect_max_s",), f"must be >= reconnect_min_s ({self.reconnect_min_s})")
        return self

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"pdm-agent-{self._device_id or 'unnamed'}"

    @property
    def password_source(self) -> Optional[str]:
        """Where `password()` reads from, for messages; None when there is no password source."""
        if self.password_file is not None:
            return str(self.password_file)
        return f"the systemd credential {CREDENTIAL_NAME}" if os.environ.get("CREDENTIALS_DIRECTORY") else None

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
    """Where the outbox and learned state live, and the outbox's disk bound."""

    dir: Path = Field(
        default_factory=_state_dir,
        description="outbox and learned state; default $STATE_DIRECTORY, else /var/lib/pdm-agent",
        json_schema_extra={"default": DEFAULT_STATE_DIR},
    )
    max_outbox_mb: float = Field(64, gt=0, le=R.OUTBOX_MB_MAX, description="disk bound for messages buffered while offline")


class AggregatesConfig(Section):
    """Per-interval feature aggregates (mean/min/max) published for every sensor."""

    interval: float = Field(60, ge=R.AGGREGATE_INTERVAL_MIN_S, le=86_400, description="seconds per published aggregate")
    features: Optional[list[Annotated[str, Field(min_length=1)]]] = Field(
        None, min_length=1, description="feature names or patterns (*.rms_g) to publish; null = all; score always")


class LoggingConfig(Section):
    """Log level and format (journald reads JSON; a terminal gets console lines)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto = console on a TTY, else JSON"
    )


class HomeAssistantConfig(Section):
    """Home Assistant MQTT discovery for this device (off by default)."""

    enabled: bool = Field(False, description="publish Home Assistant MQTT discovery (retained) for this device")
    discovery_prefix: Annotated[str, AfterValidator(R.deliverable_topic)] = Field("homeassistant", pattern=TOPIC_PATTERN, description="Home Assistant's discovery prefix")


class ModelsConfig(Section):
    """Signed model bundles: the public keys that may sign them and how often their paths are checked."""

    trusted_keys: list[Path] = Field(default_factory=list, description="Ed25519 public keys for bundles")
    watch_interval_s: float = Field(2.0, gt=0, le=R.WATCH_INTERVAL_MAX_S, description="how often bundle paths are checked for a new bundle")


class Config(Section):
    """The whole configuration file."""

    device: DeviceConfig
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    sensors: list[SensorEntry] = Field(min_length=1)
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
            if sensor.detector.bundle is not None and not self.models.trusted_keys:
                raise _rule(
                    ("sensors", i, "detector", "bundle"),
                    "bundles are verified before loading: list their public keys in models.trusted_keys",
                )
        self.mqtt._device_id = self.device.id
        return self
