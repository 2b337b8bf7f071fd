"""Things in a valid config that will probably not do what the operator expects.

These are not errors: the agent runs with them as written (a USB serial adapter that is not
plugged in yet appears later, and the agent retries until it does). `config check` prints them
and `run` logs them at start, each as `path.to.key: message (FILE:LINE)`, like errors.
"""

from __future__ import annotations

import os

import yaml

from agent.config import _format_path, _line_map, _Loader
from agent.config_models import Config
from drivers.base import VALUES, driver_for


def _lines(text: str) -> dict:
    lines: dict = {(): 1}
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _line_map(node, (), lines, [], set())
    except yaml.YAMLError:
        pass  # only called on text that validated
    finally:
        loader.dispose()
    return lines


def _is_device_path(port: str) -> bool:
    return "://" not in port  # pyserial URLs (socket://, rfc2217://, loop://) are not files


def hop_seconds(sensor) -> float:
    """Seconds between two windows (feature vectors) of a sensor."""
    from agent.baseline import cadence_s

    return cadence_s(sensor)


def config_warnings(cfg: Config, text: str, source: str) -> list[str]:
    """Warnings about a validated config, as `path.to.key: message (SOURCE:LINE)`.

    >>> from agent.config import parse_config
    >>> text = "device: {id: gw}\\nsensors:\\n  - {name: p1, port: /dev/nonexistent-tty}\\naggregates: {interval: 2}\\n"
    >>> for w in config_warnings(parse_config(text), text, "c.yaml"): print(w)
    sensors[0].port: /dev/nonexistent-tty does not exist (yet): the agent starts anyway and opens it when it appears (a USB adapter not plugged in? a typo?) (c.yaml:3)
    aggregates.interval: 2 s is shorter than sensor p1's window hop (4096 samples at 1000 Hz = 4.1 s): some aggregates will have count 0 (c.yaml:4)
    """
    lines = _lines(text)
    found: list[tuple[tuple, str]] = []
    for i, sensor in enumerate(cfg.sensors):
        if sensor.port and driver_for(sensor.protocol).needs_port and _is_device_path(sensor.port) and not os.path.exists(sensor.port):
            found.append((("sensors", i, "port"),
                          f"{sensor.port} does not exist (yet): the agent starts anyway and opens it when it "
                          f"appears (a USB adapter not plugged in? a typo?)"))
    interval = cfg.aggregates.interval
    for sensor in cfg.sensors:
        hop = hop_seconds(sensor)
        if interval < hop:
            what = (f"poll interval ({hop:g} s)" if driver_for(sensor.protocol).kind == VALUES else
                    f"window hop ({sensor.window.hop or sensor.window.size} samples at {sensor.sample_rate:g} Hz"
                    f" = {hop:.1f} s)")
            found.append((("aggregates", "interval"),
                          f"{interval:g} s is shorter than sensor {sensor.name}'s {what}: "
                          f"some aggregates will have count 0"))
    out = []
    for loc, message in found:
        key = loc
        while key not in lines:
            key = key[:-1]
        out.append(f"{_format_path(loc)}: {message} ({source}:{lines[key]})")
    return out


def load_warnings(cfg: Config, path: str) -> list[str]:
    """`config_warnings` for the file at `path` (already validated into `cfg`)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    return config_warnings(cfg, text, os.fspath(path))
