"""The MQTT topic scheme (docs/mqtt.md), in one place for the publisher, the service, discovery
and the `status` / `watch` commands.

    <topic_prefix>/<device>/status                       retained status document, Last Will
    <topic_prefix>/<device>/<sensor>/alert               alert events (QoS 1)
    <topic_prefix>/<device>/<sensor>/aggregate           per-interval aggregates (QoS 1)
    <discovery_prefix>/device/pdm-agent-<device>/config  Home Assistant discovery (retained)

>>> record("pdm", "gw-1", "pump1", "alert"), status("pdm", "gw-1")
('pdm/gw-1/pump1/alert', 'pdm/gw-1/status')
>>> discovery("homeassistant", "gw-1")
'homeassistant/device/pdm-agent-gw-1/config'
"""

from __future__ import annotations

RECORD_KINDS = ("alert", "aggregate")


def join(prefix: str, device: str, *parts: str) -> str:
    """``prefix/device/parts...``; a part may be the MQTT wildcard ``+`` (subscriptions)."""
    return "/".join([prefix, device, *parts])


def status(prefix: str, device: str) -> str:
    return join(prefix, device, "status")


def record(prefix: str, device: str, sensor: str, kind: str) -> str:
    """The topic of a sensor's records of `kind` (alert or aggregate); `sensor` may be ``+``."""
    return join(prefix, device, sensor, kind)


def discovery(discovery_prefix: str, device: str) -> str:
    return f"{discovery_prefix}/device/pdm-agent-{device}/config"
