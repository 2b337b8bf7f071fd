"""Config rules against settings that defeat delivery: topics the broker discards or refuses,
client ids and host names that cannot work, and the numeric bounds (``*_MAX``) used by
agent/config_models.py. Each rule raises a ValueError in words; the loader adds the key and line.

Why these topics are refused (MQTT 3.1.1):
    * a leading ``$`` is reserved for the server (section 4.7.2): Mosquitto acknowledges a
      client's PUBLISH to ``$SYS/...`` and throws it away, so the outbox deletes the rows as
      delivered and alerts are lost without an error; other ``$`` topics are not matched by
      ``#`` subscriptions;
    * U+0000 is forbidden in topic names (section 1.5.3): every CONNECT carrying it in the Will
      topic is malformed, so the agent never connects; other control characters are allowed by
      the protocol but cannot be typed, shown or subscribed to by an operator.

>>> deliverable_topic("pdm")
'pdm'
>>> deliverable_topic("$SYS/pdm")
Traceback (most recent call last):
ValueError: must not start with '$' (topics starting with '$' are reserved for the broker: Mosquitto accepts and discards messages to $SYS/..., and '#' subscribers never see '$' topics)
"""

from __future__ import annotations

import unicodedata

DAY_S = 86_400.0
LEARN_SECONDS_MAX = 30 * DAY_S  # a baseline that takes longer than a month never gets ready in practice
HALF_LIFE_MAX_S = 365 * DAY_S
RECONNECT_MAX_S = 3_600.0  # a broker back after an outage is found within the hour
STATUS_INTERVAL_MIN_S, STATUS_INTERVAL_MAX_S = 1.0, DAY_S
AGGREGATE_INTERVAL_MIN_S = 1.0  # below that an aggregate is a copy of each feature vector
POLL_INTERVAL_MIN_S = 0.01  # a Modbus RTU transaction takes ~10 ms even at 115200 baud
MODBUS_TIMEOUT_MAX_S = 60.0
OFFLINE_AFTER_MAX_S = 7 * DAY_S
STUCK_AFTER_MAX_S = 30 * DAY_S
OUTBOX_MB_MAX = 1_048_576.0  # 1 TiB
WATCH_INTERVAL_MAX_S = 3_600.0
CLIENT_ID_MAX = 128  # MQTT 3.1.1 guarantees only 23; brokers accept more, none needs this many


def _control(text: str) -> str | None:
    """The first control character in `text`, as U+XXXX, or None."""
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            return f"U+{ord(ch):04X}"
    return None


def deliverable_topic(value: str) -> str:
    """A topic prefix every broker delivers and a '#' subscriber sees; see the module doc."""
    if value.startswith("$"):
        raise ValueError("must not start with '$' (topics starting with '$' are reserved for the broker: "
                         "Mosquitto accepts and discards messages to $SYS/..., and '#' subscribers never "
                         "see '$' topics)")
    bad = _control(value)
    if bad:
        raise ValueError(f"must not contain control characters (found {bad}; U+0000 makes every "
                         "CONNECT malformed, so the agent would never connect)")
    if len(value.encode()) > 1024:
        raise ValueError("is too long (over 1024 bytes; every message carries it)")
    return value


def usable_client_id(value: str | None) -> str | None:
    """An MQTT client id the operator can see in broker logs: no control characters, no
    wildcards (brokers' ACL patterns treat '+'/'#' specially), at most CLIENT_ID_MAX characters."""
    if value is None:
        return value
    bad = _control(value)
    if bad:
        raise ValueError(f"must not contain control characters (found {bad})")
    if "#" in value or "+" in value:
        raise ValueError("must not contain '+' or '#'")
    if len(value) > CLIENT_ID_MAX:
        raise ValueError(f"is {len(value)} characters long; at most {CLIENT_ID_MAX} "
                         "(MQTT 3.1.1 brokers must accept 23, many refuse longer ids)")
    return value


def host_name(value: str) -> str:
    """A host name or address: no spaces or control characters, no URL scheme."""
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces (a trailing space makes every DNS lookup fail)")
    bad = _control(value)
    if bad:
        raise ValueError(f"must not contain control characters (found {bad})")
    if "://" in value:
        raise ValueError("is a host name or address, not a URL (set port and tls separately)")
    return value
