"""What a broker does to a client that MQTT 3.1.1 does not explain: refuse one message, or close
the connection because another client took the client id. The publisher feeds the watcher of
the first here; it decides, logs once in words and keeps the counts. The second is
`agent.identity` (takeover detection and back-off).

Both faults look the same on the wire: the broker closes the TCP connection, no reason given.

* **Refused message (poison)**: the close follows a PUBLISH the broker will not take (larger
  than its ``max_packet_size``, or refused for another reason). `RefusedMessages` counts a
  strike against the oldest unacked row on each close, has it sent alone until it is acked,
  and sets it aside after `POISON_STRIKES` closes in a row (a network drop does not single out
  one row; a refusing broker does). A row set aside this way that is larger than every row
  acked so far teaches a size limit; `mqtt.max_packet_bytes`, when set, is the limit from the
  start. Rows at or above the limit are set aside before they are sent; once a limit is
  learned, a row larger than any acked one is set aside after one close instead of three.
* **Client-id clash**: see `agent.identity`.

>>> packet_size("a/b", b"x" * 100)
109
"""

from __future__ import annotations

POISON_STRIKES = 3


def packet_size(topic: str, payload: bytes) -> int:
    """Bytes of the MQTT 3.1.1 QoS 1 PUBLISH carrying `payload` on `topic` (section 3.3): fixed
    header (1 + remaining-length varint of 1-4 bytes), topic length (2) + topic, packet id (2), payload."""
    remaining = 2 + len(topic.encode()) + 2 + len(payload)
    varint = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + varint + remaining


class RefusedMessages:
    """Finds rows the broker refuses and sets them aside in `outbox` (see the module doc).
    Not thread-safe: the publisher calls it with its send lock held."""

    def __init__(self, outbox, log, max_packet_bytes: int | None = None) -> None:
        self.outbox = outbox
        self.log = log
        self.max_packet_bytes = max_packet_bytes  # the broker's limit, when the operator knows it
        self.suspect: int | None = None  # row id the broker may be refusing (sent alone until acked)
        self.strikes = 0
        self._sizes: dict[int, int] = {}  # row id -> packet bytes, for rows awaiting PUBACK
        self._largest_acked = 0
        self.learned_limit: int | None = None  # smallest refused packet larger than any acked one
        self._reported: set[str] = set()  # one log line per topic; the count is in the status

    def window(self, free: int, in_flight: int) -> int:
        """How many rows may be sent now: a suspect goes alone, so a close singles it out."""
        if self.suspect is not None:
            return 0 if in_flight else 1
        return free

    def admit(self, msg) -> int | None:
        """The packet size if `msg` may be sent, else None (it was set aside)."""
        if self.suspect is not None and msg.id != self.suspect:
            self.suspect, self.strikes = None, 0  # it left the queue another way
        size = packet_size(msg.topic, msg.payload)
        if self.max_packet_bytes is not None and size > self.max_packet_bytes:
            self._set_aside(msg.id, "larger than mqtt.max_packet_bytes", size)
            return None
        if self.learned_limit is not None and size >= self.learned_limit:
            # Learned: a message this large got the connection closed 3 times while smaller ones
            # were acked; do not cost every later one 3 reconnects.
            self._set_aside(msg.id, f"at least as large as a message the broker refused ({self.learned_limit} bytes)",
                            size)
            return None
        return size

    def sent(self, row_id: int, size: int) -> None:
        self._sizes[row_id] = size

    def acked(self, row_ids: list[int]) -> None:
        for row in row_ids:
            self._largest_acked = max(self._largest_acked, self._sizes.pop(row, 0))
        if self.suspect in row_ids:
            self.suspect, self.strikes = None, 0  # delivered after all: it was the network

    def closed(self, unacked: list[int]) -> None:
        """The connection closed with `unacked` rows in flight: a strike against the oldest."""
        if unacked:
            oldest = min(unacked)
            if oldest == self.suspect:
                self.strikes += 1
            else:
                self.suspect, self.strikes = oldest, 1
            size = self._sizes.get(oldest, 0)
            # Once the broker is known to refuse by size, a row larger than any it took needs
            # one close, not three: aggregates differ by a few bytes, and each would cost 3.
            by_size = self.learned_limit is not None and size > self._largest_acked
            if self.strikes >= (1 if by_size else POISON_STRIKES):
                self._set_aside(oldest, f"the broker closed the connection each time it was sent "
                                        f"({self.strikes} time{'s' if self.strikes > 1 else ''})", size)
                if size > self._largest_acked:
                    self.learned_limit = size if self.learned_limit is None else min(self.learned_limit, size)
                self.suspect, self.strikes = None, 0
        self._sizes.clear()

    def _set_aside(self, row_id: int, why: str, size: int) -> None:
        msg = self.outbox.set_aside(row_id)
        if msg is None or msg.topic in self._reported:
            return
        self._reported.add(msg.topic)
        limit = self.max_packet_bytes if self.max_packet_bytes is not None else \
            "not announced by MQTT 3.1.1 brokers; set mqtt.max_packet_bytes to check before sending"
        self.log.error("broker refused a message; set aside so the messages behind it are delivered "
                       "(counted in outbox.rejected; reported once per topic)",
                       topic=msg.topic, kind=msg.kind, size_bytes=size or packet_size(msg.topic, msg.payload),
                       limit_bytes=limit, reason=why)

