"""What every piece of configuration shares, from the lowest layer up: a protocol's own keys are a
`Section` its driver declares (drivers/base.Driver.settings), composed with the keys every sensor
has (agent/sensor_config.py) into one model per protocol, chosen by `protocol`.

`rule(at, message)` is the one way a validator reports an error about another key: agent/config.py
turns `at` into the exact key path and line the operator wrote.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=64)]


class Section(BaseModel):
    """A configuration section: unknown keys are errors (typos are caught), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .nan/.inf: never a setting


def rule(at: tuple, message: str) -> PydanticCustomError:
    """A cross-field error located at `at`, relative to the loc of the validator that raises it
    ("..": one level up): validators only know their own loc, the operator needs the exact key."""
    return PydanticCustomError("config_rule", message.replace("{", "(").replace("}", ")"), {"at": at})
