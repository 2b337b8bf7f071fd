"""The agent's configuration: YAML in, validated pydantic models out (config.yaml documents every key).

One model per section, ``extra="forbid"``, constraints in ``Field(...)`` and cross-field rules in
validators. Errors are collected, never raised at the first one, and each names its key path and
source line, so an operator can fix the whole file in one pass::

    sensors[0].baudrate: Input should be a valid integer, ...; got 'fast' (config.yaml:14)
    mqtt.prot: unknown key 'prot'; did you mean 'port'? (config.yaml:5)

>>> cfg = parse_config("device: {id: gw1}\\nsensors: [{name: pump1, protocol: sim}]")
>>> cfg.mqtt.effective_client_id, cfg.sensors[0].window.hop, cfg.sensors[0].temperature_channels
('pdm-agent-gw1', 4096, ['temp'])
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ValidationError

from agent.config_models import *  # noqa: F403 - the models are part of this module's API
from agent.config_models import PATTERN_WORDS, Config
from agent.sensor_config import DEFAULT_PROTOCOL, SENSOR_MODELS, UNKNOWN, UnknownProtocolSensor, protocols_with

SENSOR_TAGS = {**SENSOR_MODELS, UNKNOWN: UnknownProtocolSensor}  # the union tags pydantic puts in error locs

SYSTEM_CONFIG_PATH = "/etc/pdm-agent/config.yaml"


class ConfigError(Exception):
    """Every problem found in a configuration, one `path.to.key: message (FILE:LINE)` per entry."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


# --- loading: YAML text -> Config, with every error located in the source ----------------------


def _line_map(node: yaml.Node, path: tuple, lines: dict, dups: list, active: set) -> None:
    """Record the 1-based source line of every key path under `node`; note duplicate keys."""
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: explicit keys win
                merged: dict = {}
                for sub in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    _line_map(sub, path, merged, [], active)
                for p, line in merged.items():
                    lines.setdefault(p, line)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                dups.append((path + (key,), f"duplicate key '{key}' (first at line {seen[key]})", line))
            seen.setdefault(key, line)
            lines[path + (key,)] = line
            _line_map(value_node, path + (key,), lines, dups, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _line_map(item, path + (i,), lines, dups, active)
    active.discard(id(node))


def _format_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_at(loc: tuple) -> Optional[type[BaseModel]]:
    """The model class that validates the mapping at `loc` (with the sensor union's tag), to suggest its keys."""
    ann: Any = Config
    for i, part in enumerate(loc):
        if i == 2 and loc[0] == "sensors" and part in SENSOR_TAGS:
            ann = SENSOR_TAGS[part]
            continue
        ann = _unwrap(ann, part)
        if ann is None:
            return None
    ann = _unwrap(ann, None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _unwrap(ann: Any, part: Any) -> Any:
    origin = typing.get_origin(ann)
    if origin is Union or type(ann).__name__ == "UnionType":
        models = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = models[0] if len(models) == 1 else None
        origin = typing.get_origin(ann)
    if part is None:
        return ann
    if isinstance(part, int) and origin is list:
        return typing.get_args(ann)[0]
    if isinstance(ann, type) and issubclass(ann, BaseModel) and part in ann.model_fields:
        return ann.model_fields[part].annotation
    return None


def _untagged(loc: tuple) -> tuple:
    """A loc without the sensor union's tag (`sensors.0.modbus.slave_id` -> `sensors.0.slave_id`):
    error paths stay as the operator wrote the keys."""
    if len(loc) > 2 and loc[0] == "sensors" and isinstance(loc[1], int) and loc[2] in SENSOR_TAGS:
        return loc[:2] + loc[3:]
    return loc


def sensor_key_path(loc: tuple) -> str:
    """`a.b` path of an error from validating one sensor entry (`parse_sensor`), without the union's tag."""
    return ".".join(map(str, _untagged(("sensors", 0) + tuple(loc))[2:]))


def _message(err: dict, loc: tuple, tagged: tuple = (), lines: dict | None = None) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if key == "password":
            return (
                "inline passwords are not allowed: put it in a file and set password_file, "
                "or pass it as the systemd credential 'mqtt-password' ($CREDENTIALS_DIRECTORY)"
            )
        owners = protocols_with(key) if len(tagged) == 4 and tagged[0] == "sensors" else []
        if owners:  # a key of another protocol: say whose, and which protocol this sensor has
            protocol = tagged[2]
            unset = lines is not None and loc[:2] + ("protocol",) not in lines and protocol == DEFAULT_PROTOCOL
            return (f"not a key of protocol '{protocol}'" + (" (the default: `protocol` is not set)" if unset else "")
                    + f"; it is a key of protocol {' and '.join(repr(p) for p in owners)}")
        model = _model_at((tagged or loc)[:-1])
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            return f"unknown key '{key}'; did you mean '{close[0]}'?"
        return f"unknown key '{key}'" + (f"; valid keys: {', '.join(known)}" if known else "")
    if kind == "missing":
        return "required key is missing"
    if kind == "model_type":  # "a valid dictionary or instance of <class>": the class is no word of the file
        return "must be a mapping of keys" + (f"; got {err['input']!r}" if len(repr(err.get("input"))) <= 40 else "")
    if kind == "too_short" and loc == ("sensors",):
        # The installed template ships with none, so the service cannot start on a demo sensor.
        return "no sensor configured: add at least one (the installed file has commented examples)"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        msg = PATTERN_WORDS.get(err.get("ctx", {}).get("pattern"), msg)
    value = err.get("input")
    if kind != "config_rule" and isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 40:
        msg += f"; got {value!r}"
    if kind == "literal_error" and isinstance(value, str):  # `protocol: modbsu`
        close = difflib.get_close_matches(value, re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected"))), 1, 0.6)
        msg += f"; did you mean '{close[0]}'?" if close else ""
    return msg


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 timestamps: no config value is a date, and `id: 2024-01-01`
    should stay the string the operator wrote (and `2024-13-45` not crash the parser)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def parse_config(text: str, source: str = "<string>") -> Config:
    """Validate YAML `text`; `source` is the file name used in error messages.

    Raises
    ------
    ConfigError
        With every problem found, each as `path.to.key: message (SOURCE:LINE)`.

    >>> parse_config("device: {id: gw1}\\nsensors: []\\nmqtt: {prot: 1883}", "c.yaml")
    Traceback (most recent call last):
    ...
    agent.config.ConfigError: sensors: no sensor configured: add at least one (the installed file has commented examples) (c.yaml:2)
    mqtt.prot: unknown key 'prot'; did you mean 'port'? (c.yaml:3)
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        from agent.yaml_errors import describe

        raise ConfigError([describe(exc, source)]) from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError([f"{source}: YAML error: {exc}"]) from None
    finally:
        loader.dispose()

    if data is None:
        data = {}
    if not isinstance(data, dict):
        line = node.start_mark.line + 1
        msg = "must be a mapping of sections (device, mqtt, sensors, ...)"
        raise ConfigError([f"(top level): {msg} ({source}:{line})"])

    lines: dict = {(): 1}
    found: list[tuple[tuple, str, int]] = []
    if node is not None:
        _line_map(node, (), lines, found, set())
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        config = None
        for err in exc.errors(include_url=False):
            tagged = tuple(err["loc"])
            loc = _untagged(tagged)
            if err["type"] == "config_rule":
                for part in err.get("ctx", {}).get("at", ()):
                    loc = loc[:-1] if part == ".." else loc + (part,)
            key = loc
            while key not in lines:
                key = key[:-1]
            found.append((loc, _message(err, loc, tagged, lines), lines[key]))
    if found:
        found.sort(key=lambda f: f[2])
        raise ConfigError([f"{_format_path(loc)}: {msg} ({source}:{line})" for loc, msg, line in found])
    return config


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate the YAML file at `path` (see `parse_config`)."""
    source = os.fspath(path)
    try:
        text = Path(source).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"{source}: no such file (set --config or $PDM_AGENT_CONFIG)"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{source}: is a directory, expected a YAML file"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not UTF-8 text (byte {exc.start})"]) from None
    return parse_config(text, source)


def json_schema() -> dict:
    """JSON Schema of the config file, for editors' YAML language servers.

    >>> "sensors" in json_schema()["properties"]
    True
    """
    schema = Config.model_json_schema()
    # `sensors[]` as the file is read: exactly one protocol's keys per sensor. An editor cannot run
    # the union's discriminator, so each protocol but the default requires `protocol`, and the
    # catch-all of unknown protocols (it only shapes error messages) is left out.
    defs = schema["$defs"]
    defs.pop(UnknownProtocolSensor.__name__, None)
    schema["properties"]["sensors"]["items"] = {"oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in SENSOR_MODELS.values()]}
    for protocol, model in SENSOR_MODELS.items():
        if protocol != DEFAULT_PROTOCOL:
            defs[model.__name__]["required"] = sorted({*defs[model.__name__].get("required", ()), "protocol"})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "pdm-agent configuration", **{
        k: v for k, v in schema.items() if k != "title"
    }}


def default_config_path() -> str:
    """`$PDM_AGENT_CONFIG`, else the system config when it exists, else ./config.yaml."""
    env = os.environ.get("PDM_AGENT_CONFIG")
    if env:
        return env
    if os.path.exists(SYSTEM_CONFIG_PATH):
        return SYSTEM_CONFIG_PATH
    return "./config.yaml"
