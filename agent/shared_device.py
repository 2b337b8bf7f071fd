"""Two agents with one `device.id` but different MQTT client ids (one sets `mqtt.client_id`).

The broker never closes either (their client ids differ), so the takeover detection of
`agent.identity` sees nothing, yet both publish on `<prefix>/<device.id>/...`: each one's status
overwrites the other's, their alerts and aggregates mix under one device, and the Last Will of one
says the device is offline while the other runs. Nothing would say so.

Every status document carries this process's random `instance` id and its `client_id`; the
publisher subscribes to its own status topic, and a live (not retained: a retained one may be this
agent's own before a restart) `online` status of another instance is the other agent. Said once in
the log (error `device.id shared: ...`) and in the status (`mqtt_warning`, `device_id_shared`)
until no status of the other has arrived for `forget_s`.

>>> import structlog; s = SharedDeviceId("gw-1", "pdm-agent-gw-1", structlog.get_logger(), forget_s=60)
>>> s.log = structlog.testing.CapturingLogger()
>>> s.seen(b'{"state":"online","instance":"x","client_id":"other"}', retain=False)
True
>>> s.status()["device_id_shared"]["other_client_id"]
'other'
>>> s.seen(s.own_fields_json(), retain=False)  # our own status, echoed back
False
"""

from __future__ import annotations

import json
import secrets
import threading
import time

from agent.records import iso_utc


class SharedDeviceId:
    """Detects another agent publishing as this `device_id` (see the module doc).

    `seen(payload, retain)` for every message on the own status topic (paho's thread); returns
    True when it came from another agent. `status()` gives the fields for the status document,
    empty when none was seen for `forget_s` seconds (monotonic clock)."""

    def __init__(self, device_id: str, client_id: str, log, *, forget_s: float) -> None:
        self.device_id = device_id
        self.client_id = client_id
        self.instance = secrets.token_hex(8)  # this process; a restart is a new instance
        self.log = log
        self.forget_s = float(forget_s)
        self._lock = threading.Lock()
        self._last: float | None = None  # monotonic time of the other's last status
        self._since: float | None = None  # wall-clock time of the detection
        self._other: str | None = None

    def own_fields(self) -> dict:
        return {"instance": self.instance, "client_id": self.client_id}

    def own_fields_json(self) -> bytes:
        return json.dumps({"state": "online", **self.own_fields()}).encode()

    def seen(self, payload: bytes, retain: bool) -> bool:
        if retain:
            return False
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeError):
            return False
        if not isinstance(doc, dict) or doc.get("state") != "online":
            return False
        other = doc.get("instance")
        if other is None or other == self.instance:
            return False
        with self._lock:
            first = self._last is None
            self._last, self._other = time.monotonic(), str(doc.get("client_id"))
            if first:
                self._since = time.time()
        if first:
            self.log.error(
                f"device.id shared: another agent (client id {self._other!r}) publishes as device.id "
                f"{self.device_id!r}: its status, alerts and Last Will mix with this one's", device_id=self.device_id,
                client_id=self.client_id, other_client_id=self._other, fix=self.fix())
        return True

    def fix(self) -> str:
        return f"give each gateway its own device.id; two agents now publish as {self.device_id!r}"

    def status(self) -> dict:
        with self._lock:
            if self._last is None:
                return {}
            if time.monotonic() - self._last > self.forget_s:
                self._last = None
                cleared = True
            else:
                cleared = False
                doc = {"mqtt_warning": f"device.id {self.device_id!r} shared: another agent (client id "
                                       f"{self._other!r}) publishes as this device",
                       "device_id_shared": {"device_id": self.device_id, "client_id": self.client_id,
                                            "other_client_id": self._other, "since": iso_utc(self._since),
                                            "fix": self.fix()}}
        if cleared:
            self.log.info("device.id no longer shared: no status of the other agent", device_id=self.device_id,
                          forget_s=self.forget_s)
            return {}
        return doc
