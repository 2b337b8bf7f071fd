"""A subscribing MQTT client for the operator commands (`status`, `watch`, ...).

It uses the broker settings of the agent's own config (host, port, TLS, username and password),
so an operator on the gateway needs no other client and no second copy of the credentials. Its
client id is derived from the agent's but never equal to it: a broker disconnects the older of
two clients with one id, and that would be the agent.
"""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config_models import CREDENTIAL_NAME


class BrokerError(Exception):
    """The broker cannot be reached or refused us; the message says which, in words."""


def password(mqtt_cfg, config_path: str | None) -> str | None:
    """The agent's broker password: `password_file` or the systemd credential, as the agent
    reads it; outside the service (an operator's shell has no $CREDENTIALS_DIRECTORY), the
    credential file the unit loads it from, next to the config (`/etc/pdm-agent/mqtt-password`)."""
    found = mqtt_cfg.password()
    if found is None and mqtt_cfg.password_file is None and config_path:
        path = Path(config_path).resolve().parent / CREDENTIAL_NAME
        try:
            found = path.read_text(encoding="utf-8").rstrip("\r\n") or None
        except OSError:
            found = None
    return found


class Subscription:
    """Connects, subscribes to `topics` (QoS 1) and calls `on_message(topic, payload, retain)`
    from paho's thread. `wait_connected(timeout)` raises BrokerError with the reason."""

    def __init__(self, mqtt_cfg, topics: list[str], on_message, *, role: str, config_path: str | None = None) -> None:
        self.cfg = mqtt_cfg
        self.topics = topics
        self.on_message = on_message
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failure: str | None = None
        self.lost = threading.Event()
        # Shared subscriptions ($share/GROUP/...) are MQTT 5; everything else stays 3.1.1 (any broker).
        v5 = any(t.startswith("$share/") for t in topics)
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"{mqtt_cfg.effective_client_id}-{role}-{os.getpid()}",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else True)
        if mqtt_cfg.username is not None:
            self.client.username_pw_set(mqtt_cfg.username, password(mqtt_cfg, config_path))
        if mqtt_cfg.tls is not None:
            tls = mqtt_cfg.tls
            self.client.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                                certfile=str(tls.cert_file) if tls.cert_file else None,
                                keyfile=str(tls.key_file) if tls.key_file else None,
                                cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            if tls.insecure:
                self.client.tls_insecure_set(True)
        self.client.reconnect_delay_set(1, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = lambda c, u, msg: self.on_message(msg.topic, bytes(msg.payload), bool(msg.retain))

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._failure = f"the broker at {self.where} refused the connection: {reason_code}"
            return
        self._failure = None
        self.lost.clear()
        self._connected.set()
        client.subscribe([(t, 1) for t in self.topics])

    def _on_connect_fail(self, client, userdata) -> None:
        self._failure = f"cannot reach the broker at {self.where} (not running, wrong host/port, or TLS refused)"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        self._subscribed.clear()
        self.lost.set()

    def start(self) -> None:
        """Connect in the background (paho retries by itself after a loss)."""
        try:
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to the broker at {self.where}: {exc}") from None
        self.client.loop_start()

    def wait_subscribed(self, timeout: float) -> None:
        if not self._subscribed.wait(timeout):
            raise BrokerError(self._failure or f"no answer from the broker at {self.where} within {timeout:g} s")

    def open(self, timeout: float) -> None:
        """start() then wait_subscribed(timeout); on BrokerError the client is closed first."""
        try:
            self.start()
            self.wait_subscribed(timeout)
        except BrokerError:
            self.close()
            raise

    def wait_reconnected(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
