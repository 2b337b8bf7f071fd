"""Identity conflicts: two gateways with one MQTT client id (a copied SD-card image with the same
`device.id`) knock each other off the broker. MQTT 3.1.1 (section 3.1.4) says a broker closes the
existing connection when a new one arrives with its client id, and gives the closed client no
reason, so without a policy the two reconnect at `mqtt.reconnect_min_s` and take over from each
other forever, and neither holds a connection long enough to be of use.

`IdentityConflict` is the policy, pure and clock-injected (seconds on a monotonic clock):

* **Detect**: `CONFLICT_CLOSES` closes in a row, each within `SHORT_S` of the CONNACK with nothing
  in flight (a refused message closes with a row in flight; see `broker_faults`), is a takeover
  fight. Said once in the log (`report`), and in the status until it clears.
* **Back off instead of fighting**: from then on the reconnect wait starts at `mqtt.reconnect_max_s`
  and doubles at each further takeover up to `BACKOFF_GROWTH` times that (8 min with the default
  60 s), with +-`JITTER` so two copies drift apart. While suspected, every close of a connection
  younger than `clear_after_s` counts as a takeover: under back-off the other copy waits minutes
  before taking the id back, so connections are no longer short.
* **Clear**: a connection that held `clear_after_s` = twice the longest wait (16 min with the
  default) ends the conflict; reconnects go back to normal. Not twice the *current* wait: the two
  copies' waits differ (jitter, one detected it a takeover later), and a copy that cleared early
  would come back at `reconnect_min_s` and restart the fight.

The outbox is not touched: rows wait on disk while the agent waits, and each connection the agent
gets delivers the backlog, so the conflict delays alerts but loses none.

>>> c = IdentityConflict("pdm-agent-gw-1", "gw-1", reconnect_max_s=60, jitter=0.0)
>>> c.connected(0.0); c.closed(1.0, in_flight=False), c.suspected
(None, False)
>>> for t in (2.0, 4.0): c.connected(t); wait = c.closed(t + 1.0, in_flight=False)
>>> c.suspected, wait
(True, 60.0)
>>> c.connected(70.0); c.closed(100.0, in_flight=False)
120.0
>>> c.connected(200.0); c.tick(1160.0), c.suspected
(True, False)
"""

from __future__ import annotations

import random
import threading
import time

from agent.records import iso_utc

CONFLICT_CLOSES = 3  # short closes in a row that make a takeover fight
SHORT_S = 5.0  # a close this soon after the CONNACK is short
BACKOFF_GROWTH = 8  # the wait doubles from reconnect_max_s up to this many times it
JITTER = 0.2  # +-20 % on each wait, so two copies do not reconnect in lockstep


class IdentityConflict:
    """Takeover detection and back-off for one client id (see the module doc).

    `connected(now)` on every CONNACK; `closed(now, in_flight)` on every close returns the
    reconnect wait in seconds to apply now, or None to keep the normal back-off; `tick(now)`
    returns True once when a held connection clears the conflict (restore normal back-off).
    """

    def __init__(self, client_id: str, device_id: str, *, reconnect_max_s: float, jitter: float = JITTER,
                 rng: random.Random | None = None) -> None:
        self.client_id = client_id
        self.device_id = device_id
        self.base_s = float(reconnect_max_s)
        self.cap_s = self.base_s * BACKOFF_GROWTH
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.suspected = False
        self.takeovers = 0  # closes counted as takeovers since the conflict was detected
        self.since: float | None = None  # wall-clock time of the detection, for the status
        self.wait_s = 0.0  # the current back-off (without jitter)
        self._connected_at: float | None = None
        self._short = 0
        self.last_lasted_s = 0.0  # how long the last short connection held, for the log

    @property
    def clear_after_s(self) -> float:
        """How long a connection must hold to end a suspected conflict."""
        return 2 * self.cap_s

    def connected(self, now: float) -> None:
        self._connected_at = now

    def closed(self, now: float, in_flight: bool) -> float | None:
        lasted = None if self._connected_at is None else now - self._connected_at
        self._connected_at = None
        if lasted is None:  # a failed attempt, not a close: the normal back-off applies
            return self._wait() if self.suspected else None
        if self.suspected:
            if lasted >= self.clear_after_s:
                self._clear()
                return None
            self.takeovers += 1
            self.wait_s = min(self.cap_s, self.wait_s * 2)
            return self._wait()
        if lasted >= SHORT_S or in_flight:
            self._short = 0
            return None
        self._short += 1
        if self._short < CONFLICT_CLOSES:
            return None
        self.suspected, self.takeovers, self.since = True, self._short, time.time()
        self.wait_s = self.base_s
        self.last_lasted_s = lasted
        return self._wait()

    def failed(self) -> None:
        """A connection attempt failed (refused, unreachable): the broker was away, as when it
        restarts; a taken-over client reconnects at once. Short closes before it do not count."""
        if not self.suspected:
            self._short = 0

    def tick(self, now: float) -> bool:
        """True (once) when the current connection has held long enough to end the conflict."""
        if self.suspected and self._connected_at is not None and now - self._connected_at >= self.clear_after_s:
            self._clear()
            return True
        return False

    def _clear(self) -> None:
        self.suspected, self._short, self.takeovers, self.since, self.wait_s = False, 0, 0, None, 0.0

    def _wait(self) -> float:
        return round(self.wait_s * (1 + self.rng.uniform(-self.jitter, self.jitter)), 1)

    def report(self) -> dict:
        """The log line's fields when the conflict is detected (say it once)."""
        return {"device_id": self.device_id, "client_id": self.client_id, "takeovers": self.takeovers,
                "reconnect_s": self.wait_s, "max_reconnect_s": self.cap_s, "fix": self.fix()}

    def fix(self) -> str:
        return (f"give each gateway its own device.id (a distinct mqtt.client_id alone makes them publish as one "
                f"device); two agents now use device.id "
                f"{self.device_id!r} (client id {self.client_id!r})")

    def status(self) -> dict:
        """Fields for the status document: empty when no conflict is suspected."""
        if not self.suspected:
            return {}
        return {"mqtt_warning": f"client id {self.client_id!r} clash suspected: another client uses it",
                "identity_conflict": {"device_id": self.device_id, "client_id": self.client_id,
                                      "since": iso_utc(self.since), "takeovers": self.takeovers,
                                      "reconnect_s": self.wait_s, "fix": self.fix()}}


class TakeoverGuard:
    """Applies `IdentityConflict` to a paho client (its reconnect wait) and the log.

    The publisher calls `connected()` on each CONNACK, `closed(in_flight)` on each close (True
    while a conflict is suspected) and `tick()` from its drain loop; `status()` goes into the
    status document. Times are `time.monotonic()`.
    """

    def __init__(self, client, client_id: str, device_id: str, reconnect: tuple[float, float], log) -> None:
        self.client = client
        self.reconnect = reconnect  # (min, max) seconds: the normal back-off, restored when it clears
        self.log = log
        self.policy = IdentityConflict(client_id, device_id, reconnect_max_s=reconnect[1])
        self._lock = threading.Lock()  # closed() runs on paho's thread, tick() on the drain thread

    @property
    def suspected(self) -> bool:
        return self.policy.suspected

    def connected(self) -> None:
        with self._lock:
            self.policy.connected(time.monotonic())

    def closed(self, in_flight: bool) -> bool:
        with self._lock:
            was = self.policy.suspected
            wait = self.policy.closed(time.monotonic(), in_flight)
        if wait is not None:
            self.client.reconnect_delay_set(wait, max(wait, self.reconnect[1]))
        if self.policy.suspected and not was:
            self.log.error(
                f"identity conflict: the broker closes the connection seconds after accepting it, with nothing "
                f"in flight: another agent probably uses device.id {self.policy.device_id!r} (a copied SD card "
                f"image?); backing off instead of fighting, alerts wait in the outbox",
                lasted_s=round(self.policy.last_lasted_s, 2), **self.policy.report())
        elif was and not self.policy.suspected:
            self._cleared()
        return self.policy.suspected

    def failed(self) -> None:
        with self._lock:
            self.policy.failed()

    def tick(self) -> None:
        with self._lock:
            cleared = self.policy.tick(time.monotonic())
        if cleared:
            self._cleared()

    def _cleared(self) -> None:
        self.client.reconnect_delay_set(*self.reconnect)
        self.log.info("connection held; identity conflict no longer suspected", device_id=self.policy.device_id,
                      client_id=self.policy.client_id)

    def status(self) -> dict:
        with self._lock:
            return self.policy.status()
