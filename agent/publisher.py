"""MQTT publisher: drains the outbox to the broker, QoS 1, acking rows on PUBACK.

Decisions
    * MQTT 3.1.1: every broker a plant runs speaks it (older Mosquitto, EMQX, HiveMQ,
      cloud IoT hubs), and nothing we publish needs a v5 feature.
    * Clean session: the outbox, not the MQTT session, owns re-delivery. A broker-side
      session would only hold subscriptions we do not have, and paho's in-memory session
      dies with the process anyway. For the same reason paho's own resend queue is emptied
      on every connect (``drop_out_messages``) and ``max_queued_messages`` is bounded: the
      rows in flight go back to ``ready`` and are sent again from the oldest, which keeps
      first deliveries in order per sensor (duplicates are allowed; payloads carry an id).
    * A window of ``max_inflight`` unacked rows paces a long backlog and bounds memory.
    * All publishing (rows, periodic status) happens in one drain thread; paho's network
      thread only records PUBACKs and connection state. PUBACKs are committed to the
      outbox in batches by the drain thread, off the network thread.

Topics: ``P/D/status`` (retained, QoS 1; Last Will ``"offline"``), rows on their own topic.

Examples
--------
>>> Publisher.join_topic("pdm", "gw-1", "pump1", "alert")
'pdm/gw-1/pump1/alert'
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent import topics
from agent.broker_faults import RefusedMessages
from agent.config_models import MqttConfig, TlsConfig
from agent.identity import TakeoverGuard
from agent.outbox import Outbox
from agent.records import iso_utc
from agent.shared_device import SharedDeviceId

IDLE_POLL_S = 0.2  # how soon a row put by the pipeline is noticed when nothing else wakes us
RETAINED_MAX = 68  # extra retained messages per connect: Home Assistant discovery, a fleet share per sensor


class Publisher:
    """Publishes outbox rows and the device status to one broker, reconnecting forever.

    The agent must run without a broker: `start` never blocks on the network; rows wait
    in the outbox and one log line per state change says so.
    """

    def __init__(
        self,
        mqtt_config: MqttConfig,
        outbox: Outbox,
        status: Callable[[], dict],
        *,
        device_id: str,
        version: str,
        retained: Callable[[], list[tuple[str, bytes]]] | None = None,
        log=None,
    ) -> None:
        """`mqtt_config`: the `mqtt:` section (broker, credentials, TLS, topic prefix, reconnect
        and window settings), read here once; a changed section means a new Publisher.
        `outbox`: where rows wait until acked. `status()`: the status document's body (merged
        into every ``online`` status). `device_id` and `version` name this agent in topics and
        the status. `retained()`: (topic, payload) pairs published retained after every connect.
        Raises what paho raises for unusable TLS files."""
        m = mqtt_config
        self.host = m.host
        self.port = m.port
        self.client_id = m.effective_client_id
        self.topic_prefix = m.topic_prefix
        self.device_id = device_id
        self.outbox = outbox
        self.health = status
        self.version = version
        self.keepalive = m.keepalive
        self.max_inflight = max(1, int(m.max_inflight))
        self.status_interval_s = m.status_interval_s
        self.retained = retained  # (topic, payload) pairs published retained after every connect
        self.log = log if log is not None else structlog.get_logger("pdm-agent.publisher")
        self.refused = RefusedMessages(outbox, self.log, m.max_packet_bytes)  # poison rows, set aside

        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        # Two agents with one id take over from each other: detect it, back off, say so.
        self.clash = TakeoverGuard(self._client, self.client_id, device_id, (m.reconnect_min_s, m.reconnect_max_s),
                                   self.log)
        # Same device.id under another client id: the broker closes neither, so watch our status topic.
        self.shared = SharedDeviceId(device_id, self.client_id, self.log, forget_s=max(600.0, 3 * m.status_interval_s))
        # The password (password_file or systemd credential) is read again before every
        # connection attempt and on `reread_password` (SIGHUP), so a rotated secret needs no restart.
        self.username = m.username
        self.password_source = m.password_source  # where the password comes from, for messages
        self._password_reader = m.password
        self._password = m.password()
        self._password_error: str | None = None
        if self.username is not None:
            self._client.username_pw_set(self.username, self._password)
        if m.tls is not None:
            self._configure_tls(m.tls)
        self._client.reconnect_delay_set(min_delay=m.reconnect_min_s, max_delay=m.reconnect_max_s)
        self._client.max_inflight_messages_set(self.max_inflight)
        # Room for the window plus a few status messages; beyond that publish() refuses
        # rather than growing paho's memory queue (the outbox is the queue).
        self._client.max_queued_messages_set(self.max_inflight + 4 + (RETAINED_MAX if retained else 0))
        self._client.on_pre_connect = self._on_pre_connect
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = lambda c, u, msg: self.shared.seen(bytes(msg.payload), bool(msg.retain))

        self._cond = threading.Condition()  # guards _acked_mids, _connected, _status_due
        self._acked_mids: list[int] = []
        self._connected = False
        self._status_due = False
        self._refresh_due = False
        # Held while publishing rows and while resetting on connect, never inside paho
        # callbacks that run under paho's message lock (on_publish), to avoid a lock cycle.
        self._send_lock = threading.Lock()
        self._sent: dict[int, int] = {}  # paho mid -> outbox row id, rows awaiting PUBACK
        self._link_state: str | None = None  # "up" | "down", for one log line per change
        self._stopping = threading.Event()
        self._drain_thread: threading.Thread | None = None
        self.beat = time.monotonic()
        self.published = 0  # rows acked by the broker since start (a progress counter)
        self.last_ack_ts: float | None = None

    # -- public API ------------------------------------------------------------------

    join_topic = staticmethod(topics.join)  # the scheme is agent/topics.py

    def topic(self, *parts: str) -> str:
        """``prefix/device/parts...``."""
        return topics.join(self.topic_prefix, self.device_id, *parts)

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def announce(self) -> None:
        """Publish the status and the `retained` extras again now (e.g. after a reload)."""
        with self._cond:
            self._status_due = True
            self._cond.notify_all()

    def refresh_status(self) -> None:
        """Publish the status now (an alert changed what it says), without the retained extras."""
        with self._cond:
            self._refresh_due = True
            self._cond.notify_all()

    def wake(self) -> None:
        """A row was put in the outbox: send it now rather than at the next idle poll."""
        with self._cond:
            self._cond.notify_all()

    def start(self) -> None:
        """Connect in the background and start draining; returns at once."""
        self._stopping.clear()
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self._client.loop_start()
        self._drain_thread = threading.Thread(target=self._drain_loop, name="mqtt-drain", daemon=True)
        self._drain_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline (retained), disconnect cleanly and stop; unacked rows stay in the outbox."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._drain_thread is not None:
            self._drain_thread.join(timeout)
        if self.connected:
            info = self._publish_status("offline")
            try:
                info.wait_for_publish(max(0.1, min(2.0, deadline - time.monotonic())))
            except (RuntimeError, ValueError):
                pass  # connection lost meanwhile: the broker sends our Will instead
        # The graceful DISCONNECT tells the broker not to send the Will: we said offline.
        self._client.disconnect()
        self._client.loop_stop()
        self._client.drop_out_messages()
        with self._send_lock:
            self._commit_acks()
            self._sent.clear()
            self.refused.closed([])
        self.outbox.requeue_inflight()
        with self._cond:
            self._connected = False

    # -- status ----------------------------------------------------------------------

    def _status_payload(self, state: str, will: bool = False) -> bytes:
        body = {"state": state, "version": self.version, "ts": iso_utc(time.time()), **self.shared.own_fields()}
        if will:
            # The broker sends the Will later, when it loses us; its ts can only be the time
            # this connection was made. Say so, so nobody reads it as the time of the loss.
            body.update(will=True, connected_at=body["ts"],
                        reason="connection lost: the broker published this Last Will; ts is the connect time")
        body.update(self.clash.status())  # mqtt_warning and identity_conflict while suspected
        for k, v in self.shared.status().items():  # device_id_shared while another agent publishes as us
            body.setdefault(k, v)
        if state == "online":
            try:
                body.update(self.health())
            except Exception as exc:  # noqa: BLE001 - a broken health probe must not stop publishing
                body["health_error"] = repr(exc)
        return json.dumps(body, separators=(",", ":"), default=str).encode()

    def _publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topics.status(self.topic_prefix, self.device_id), self._status_payload(state), qos=1, retain=True)

    # -- paho callbacks (network thread) ---------------------------------------------

    def reread_password(self) -> None:
        """Read the password source again (SIGHUP); used from the next connection attempt."""
        try:
            password = self._password_reader()
        except (OSError, UnicodeError) as exc:
            if self._password_error != str(exc):
                self._password_error = str(exc)
                self.log.error("password file unreadable; keeping the password read before",
                               source=self.password_source, error=str(exc))
            return
        self._password_error = None
        if password != self._password:
            self._password = password
            self.log.info("broker password changed; used from the next connection", source=self.password_source)
        if self.username is not None:
            self._client.username_pw_set(self.username, self._password)

    def _on_pre_connect(self, client, userdata) -> None:
        self.reread_password()
        # Re-armed before every attempt so the Will's ts is the time of this connection.
        client.will_set(topics.status(self.topic_prefix, self.device_id), self._status_payload("offline", will=True), qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            reason = str(reason_code)
            if reason in ("Not authorized", "Bad user name or password"):
                who = f"user {self.username!r}" if self.username is not None else "anonymous clients (no mqtt.username)"
                reason = (f"not authorized: the broker refused {who}"
                          + (f" with the password from {self.password_source}" if self.password_source else "")
                          + "; the password is read again before every attempt")
            self.clash.failed()
            self._link_down(f"refused: {reason}")
            return
        self.clash.connected()
        client.subscribe(topics.status(self.topic_prefix, self.device_id), qos=0)
        with self._send_lock:
            # Rows sent on the last connection may or may not have arrived: forget paho's
            # copies and resend from the oldest row, so order per sensor holds.
            client.drop_out_messages()
            self._commit_acks()
            self.refused.closed(list(self._sent.values()))
            self._sent.clear()
            requeued = self.outbox.requeue_inflight()
            with self._cond:
                self._connected = True
                self._status_due = True
                self._cond.notify_all()
        if self._link_state != "up":
            self._link_state = "up"
            self.log.info("broker connected", broker=f"{self.host}:{self.port}",
                          pending=self.outbox.pending(), resending=requeued)

    def _on_connect_fail(self, client, userdata) -> None:
        self.clash.failed()  # the broker was away (a restart), not another client taking our id
        self._link_down("connection failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stopping.is_set():
            with self._cond:
                self._connected = False
            return
        reason = str(reason_code)
        if reason == "Unspecified error":  # MQTT 3.1.1 has no reason codes on a close
            reason = "connection closed by the broker or the network (MQTT 3.1.1 gives no reason)"
        if self.clash.closed(in_flight=bool(self._sent)):
            reason = f"identity conflict suspected: another agent uses client id {self.client_id!r}"
        self._link_down(reason)

    def _link_down(self, reason: str) -> None:
        with self._cond:
            self._connected = False
        if self._link_state != "down":
            self._link_state = "down"
            pending = self.outbox.pending()
            self.log.warning(f"broker unreachable, buffering in outbox ({pending} pending)",
                             broker=f"{self.host}:{self.port}", reason=reason, pending=pending)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # Runs under paho's message lock: record and wake, nothing more.
        with self._cond:
            self._acked_mids.append(mid)
            self._cond.notify_all()

    # -- drain thread ----------------------------------------------------------------

    def _commit_acks(self) -> None:
        """Delete rows whose PUBACK arrived (call with _send_lock held)."""
        with self._cond:
            mids, self._acked_mids = self._acked_mids, []
        # A mid not in _sent is a status message or a row from a dropped connection.
        rows = [self._sent.pop(mid) for mid in mids if mid in self._sent]
        self.refused.acked(rows)
        if rows:
            self.outbox.ack(rows)
            self.published += len(rows)
            self.last_ack_ts = time.time()

    def _drain_loop(self) -> None:
        next_status = 0.0
        while not self._stopping.is_set():
            self.beat = time.monotonic()  # liveness: the service feeds the watchdog only while this moves
            self.clash.tick()  # a connection that held long enough ends an identity conflict
            with self._cond:
                self._cond.wait(IDLE_POLL_S)
                connected, status_due, refresh = self._connected, self._status_due, self._refresh_due
                self._status_due = self._refresh_due = False
            try:
                with self._send_lock:
                    self._commit_acks()
                if not connected or self._stopping.is_set():
                    continue
                now = time.monotonic()
                if status_due and self.retained is not None:
                    for topic, payload in self.retained()[:RETAINED_MAX]:
                        self._client.publish(topic, payload, qos=1, retain=True)
                if status_due or refresh or now >= next_status:
                    self._publish_status("online")
                    next_status = now + self.status_interval_s
                self._send_window()
            except Exception:  # noqa: BLE001 - keep draining; the outbox still holds everything
                self.log.exception("publisher drain error")
                time.sleep(IDLE_POLL_S)

    def _send_window(self) -> None:
        """Publish the oldest ready rows until `max_inflight` await PUBACK."""
        with self._send_lock:
            free = self.refused.window(self.max_inflight - len(self._sent), len(self._sent))
            if free <= 0 or not self.connected:
                return
            for msg in self.outbox.claim(free):
                size = self.refused.admit(msg)
                if size is None:
                    continue  # set aside: too large for this broker
                info = self._client.publish(msg.topic, msg.payload, qos=1)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    # Lost the connection (or paho's queue is full): the claimed rows stay
                    # in flight and are requeued on the next connect.
                    return
                self._sent[info.mid] = msg.id
                self.refused.sent(msg.id, size)

    def _configure_tls(self, tls: TlsConfig) -> None:
        def path(p):
            return None if p is None else str(p)

        self._client.tls_set(
            ca_certs=path(tls.ca_file),
            certfile=path(tls.cert_file),
            keyfile=path(tls.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        if tls.insecure:
            # Skips the host name check only (self-signed lab brokers); the chain is still verified.
            self._client.tls_insecure_set(True)

