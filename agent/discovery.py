"""Home Assistant MQTT discovery (off by default: `homeassistant.enabled`).

One retained *device* discovery message (Home Assistant >= 2024.11) at
``<discovery_prefix>/device/pdm-agent-<device.id>/config`` describes every entity, so the
publisher sends one extra message per connect however many sensors there are. The entities
read the contract topics the agent publishes anyway (status, alert, aggregate): discovery adds
no data stream. A sensor removed by a reload is sent once as ``{"p": <platform>}`` so Home
Assistant deletes its entities; turning discovery off sends an empty retained payload, which
deletes the device.

Examples
--------
>>> d = Discovery("homeassistant", "pdm", "gw-1", "0.1.0")
>>> topic, payload = d.messages(True, ["pump1"])[0]
>>> topic
'homeassistant/device/pdm-agent-gw-1/config'
>>> import json; sorted(json.loads(payload)["cmps"])[:2]
['gw-1_outbox', 'gw-1_pump1_alert']
>>> d.messages(False, ["pump1"])  # turned off: delete the device once
[('homeassistant/device/pdm-agent-gw-1/config', b'')]
>>> d.messages(False, ["pump1"])
[]
"""

from __future__ import annotations

import json

from agent import topics


class Discovery:
    """Home Assistant MQTT discovery messages of one device: one retained device config on
    `topics.discovery(...)` whose components read the status, alert and aggregate topics."""

    def __init__(self, discovery_prefix: str, topic_prefix: str, device_id: str, version: str) -> None:
        self.discovery_prefix = discovery_prefix
        self.topic_prefix = topic_prefix
        self.device_id = device_id
        self.version = version
        self._announced: dict[str, str] = {}  # component id -> platform, as last published

    @property
    def topic(self) -> str:
        return topics.discovery(self.discovery_prefix, self.device_id)

    def _state(self, *parts: str) -> str:
        return topics.join(self.topic_prefix, self.device_id, *parts)

    def components(self, sensors: list[str]) -> dict[str, dict]:
        d, status = self.device_id, topics.status(self.topic_prefix, self.device_id)
        cmps: dict[str, dict] = {
            f"{d}_uptime": {"p": "sensor", "name": "Uptime", "state_topic": status,
                            "value_template": "{{ value_json.uptime_s }}", "unit_of_measurement": "s",
                            "device_class": "duration", "entity_category": "diagnostic"},
            f"{d}_outbox": {"p": "sensor", "name": "Outbox pending", "state_topic": status,
                            "value_template": "{{ value_json.outbox.alerts + value_json.outbox.aggregates }}",
                            "state_class": "measurement", "entity_category": "diagnostic"},
            f"{d}_rss": {"p": "sensor", "name": "Memory (RSS)", "state_topic": status,
                         "value_template": "{{ value_json.rss_mib }}", "unit_of_measurement": "MiB",
                         "state_class": "measurement", "entity_category": "diagnostic"},
        }
        for s in sensors:
            sensor_json = f"value_json.sensors['{s}']"
            # The sensor's condition (highest level active across alert kinds) from the status,
            # not the last alert message's level: kinds clear independently on one topic, so
            # an `iso10816` clear would otherwise show `clear` under an active `anomaly` alarm.
            # The last alert message stays available as the entity's attributes.
            cmps[f"{d}_{s}_alert"] = {
                "p": "sensor", "name": f"{s} condition", "icon": "mdi:alert-circle-outline",
                "state_topic": status,
                "value_template": f"{{{{ {sensor_json}.condition if '{s}' in value_json.sensors else 'unknown' }}}}",
                "json_attributes_topic": self._state(s, "alert")}
            cmps[f"{d}_{s}_score"] = {
                "p": "sensor", "name": f"{s} anomaly score", "state_topic": self._state(s, "aggregate"),
                "value_template": "{{ value_json.features.score.max }}", "state_class": "measurement"}
            cmps[f"{d}_{s}_baseline"] = {
                "p": "sensor", "name": f"{s} baseline", "state_topic": status,
                "value_template": f"{{{{ {sensor_json}.baseline.state if '{s}' in value_json.sensors else 'unknown' }}}}",
                "entity_category": "diagnostic"}
            cmps[f"{d}_{s}_online"] = {
                "p": "binary_sensor", "name": f"{s} online", "device_class": "connectivity",
                "state_topic": status, "entity_category": "diagnostic",
                "value_template": f"{{{{ 'ON' if '{s}' in value_json.sensors and {sensor_json}.online else 'OFF' }}}}"}
        for cid, cmp in cmps.items():
            cmp["unique_id"] = f"pdm_{cid}"
        return cmps

    def messages(self, enabled: bool, sensors: list[str]) -> list[tuple[str, bytes]]:
        """The retained message(s) to publish now, for the publisher's `retained` hook."""
        if not enabled:
            if not self._announced:
                return []
            self._announced = {}
            return [(self.topic, b"")]
        cmps = self.components(sensors)
        # Components announced before and gone now: platform only = delete in Home Assistant.
        for cid, platform in self._announced.items():
            cmps.setdefault(cid, {"p": platform})
        self._announced = {cid: c["p"] for cid, c in cmps.items() if len(c) > 1}
        body = {
            "dev": {"ids": [f"pdm-agent-{self.device_id}"], "name": f"pdm-agent {self.device_id}",
                    "mf": "pdm-agent", "mdl": "predictive-maintenance gateway", "sw": self.version},
            "o": {"name": "pdm-agent", "sw": self.version},
            "availability": [{"topic": topics.status(self.topic_prefix, self.device_id), "value_template": "{{ value_json.state }}",
                              "payload_available": "online", "payload_not_available": "offline"}],
            "qos": 1,
            "cmps": cmps,
        }
        return [(self.topic, json.dumps(body, separators=(",", ":")).encode())]


class DiscoveryFeed:
    """The publisher's `retained` hook for a configuration that a reload may replace: `messages(cfg)`
    keeps one `Discovery` while its prefixes and device id stay the same (so a removed sensor is
    deleted in Home Assistant) and starts a new one when they change."""

    def __init__(self, version: str) -> None:
        self.version = version
        self._discovery: Discovery | None = None
        self._key: tuple[str, str, str] | None = None

    def messages(self, cfg) -> list[tuple[str, bytes]]:
        """Discovery messages for `cfg` (agent.config.Config) now; [] when off and already deleted."""
        ha = cfg.homeassistant
        key = (ha.discovery_prefix, cfg.mqtt.topic_prefix, cfg.device.id)
        if self._discovery is None or self._key != key:
            self._discovery, self._key = Discovery(*key, self.version), key
        return self._discovery.messages(ha.enabled, [s.name for s in cfg.sensors])
