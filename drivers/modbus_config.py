"""`protocol: modbus`: the keys of a Modbus sensor (documented in config.yaml), registered with the
driver in drivers/modbus.py. A preset brings its device's register map and factory line settings."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from drivers.config import Section, rule

POLL_INTERVAL_MIN_S = 0.01  # a Modbus RTU transaction takes ~10 ms even at 115200 baud
MODBUS_TIMEOUT_MAX_S = 60.0
DAY_S = 86_400.0


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
            raise rule((), str(exc)) from None
        return number


class ModbusSettings(Section):
    """The keys only a Modbus sensor has."""

    protocol: Literal["modbus"] = Field("modbus", validate_default=True)
    preset: Optional[str] = Field(None, description="modbus: device model, e.g. qm30vt2")
    slave_id: int = Field(1, ge=1, le=247, description="modbus unit id")
    poll_interval: float = Field(1.0, ge=POLL_INTERVAL_MIN_S, le=DAY_S, description="modbus: seconds between polls")
    parity: Literal["N", "E", "O"] = Field("N", description="modbus RTU: N, E or O")
    timeout: float = Field(1.0, gt=0, le=MODBUS_TIMEOUT_MAX_S, description="modbus: seconds to wait for each reply")
    retries: int = Field(2, ge=0, le=10, description="modbus: re-sends before a poll counts as failed")
    word_order: Literal["big", "little"] = Field("big", description="modbus 32-bit values: high word first?")
    registers: list[RegisterConfig] = Field(default_factory=list, description="modbus: extra/overriding registers")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: Optional[str]) -> Optional[str]:
        from drivers.presets import get_preset

        if preset is not None:
            try:
                get_preset(preset)
            except ValueError as exc:
                raise rule((), str(exc)) from None
        return preset

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        """A preset brings its device's factory line settings unless the operator set them."""
        from drivers.presets import PRESETS

        if isinstance(data, dict) and data.get("preset") in PRESETS:
            preset = PRESETS[data["preset"]]
            data = {"baudrate": preset.baudrate, "slave_id": preset.slave_id, "parity": preset.parity, **data}
        return data

    @model_validator(mode="after")
    def _modbus_needs_a_map(self):
        if self.preset is None and not self.registers:
            raise rule(("preset",), "a modbus sensor needs a preset (qm30vt2, wtvb01) or registers")
        return self
