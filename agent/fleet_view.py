"""`pdm-agent watch --fleet`: every device under the topic prefix, then their alerts as they come.

Subscribes to ``P/+/status`` (retained: one document per device the broker knows) and
``P/+/+/alert``. It first prints one line per device from the retained statuses: online /
offline / unknown (an `online` document older than three status intervals), the worst level
active on any of its sensors (`clear` < `warning` < `alarm`), and the sensors still learning
their baseline. Then, until interrupted (or `--count` alerts), it prints every alert of every
device, and a line whenever a device's state, worst level or learning sensors change.

With ``--share GROUP`` the alert subscription is the MQTT 5 shared subscription
``$share/GROUP/P/+/+/alert``: the broker hands each alert to one member of the group, so several
consumers split the stream (each alert to exactly one of them while they stay connected); the
statuses are not shared, every member sees the whole fleet. ``--json`` prints one JSON object
per line: ``{"device": {...}}`` for a device line, ``{"alert": {...}}`` for an alert.
"""

from __future__ import annotations

import json
import queue
import sys
import time

from agent import topics
from agent.alert_text import describe_alert

EXIT_OK, EXIT_FAIL = 0, 1
RANK = {"clear": 0, "warning": 1, "alarm": 2}
SETTLE_S = 1.0  # retained statuses arrive right after SUBACK; the table waits until they stop


def summary(device: str, doc: dict, status_interval_s: float) -> dict:
    """One device's line from its status document: state, worst active level, learning sensors."""
    from agent.status_cmd import _stale

    state = str(doc.get("state", "unknown"))
    if _stale(doc, status_interval_s) is not None:
        state = "unknown"
    sensors = doc.get("sensors") if isinstance(doc.get("sensors"), dict) else {}
    worst, learning = "clear", []
    for name, s in sensors.items():
        if not isinstance(s, dict):
            continue
        level = str(s.get("condition", s.get("alert_level", "clear")))
        if RANK.get(level, 0) > RANK[worst]:
            worst = level
        baseline = s.get("baseline")
        if (baseline.get("state") if isinstance(baseline, dict) else baseline) == "learning":
            learning.append(name)
    return {"device": device, "state": state, "worst": worst, "learning": sorted(learning),
            "sensors": len(sensors), "ts": doc.get("ts"), "version": doc.get("version")}


def line(s: dict) -> str:
    worst = s["worst"].upper() if s["worst"] != "clear" else "clear"
    learning = ",".join(s["learning"]) or "-"
    return f"{s['device']:<20} {s['state']:<8} {worst:<8} {s['sensors']:>7}  {learning:<20} {s['ts'] or '?'}"


HEADER = f"{'DEVICE':<20} {'STATE':<8} {'WORST':<8} {'SENSORS':>7}  {'LEARNING':<20} STATUS AT"


def run(args, cfg, path) -> int:
    """`watch --fleet`; `args` as parsed by agent/watch_cmd.py."""
    from agent.mqtt_client import BrokerError, Subscription

    prefix = cfg.mqtt.topic_prefix
    alerts = topics.record(prefix, "+", args.sensor or "+", "alert")
    if args.share:
        alerts = topics.shared(args.share, alerts)
    inbox: queue.Queue = queue.Queue()
    sub = Subscription(cfg.mqtt, [topics.status(prefix, "+"), alerts], lambda t, p, r: inbox.put((t, p)),
                       role="fleet", config_path=path)
    try:
        sub.open(args.timeout)
    except BrokerError as exc:
        print(f"pdm-agent watch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"fleet under {prefix}/ on {sub.where}; following {alerts} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    shown: dict[str, dict] = {}
    emit = _printer(args.json)
    seen = 0
    try:
        pending = _settle(inbox)
        for topic, payload in pending:
            if topic.endswith("/status"):
                _status(topic, payload, shown, cfg, None)
        if not args.json:
            print(HEADER if shown else f"no device has published a status under {prefix}/ on {sub.where}", flush=True)
        for s in sorted(shown.values(), key=lambda s: s["device"]):
            emit("device", s)
        for topic, payload in pending:
            if not topic.endswith("/status"):
                seen += _alert(topic, payload, emit)
        while args.count is None or seen < args.count:
            try:
                topic, payload = inbox.get(timeout=1.0)
            except queue.Empty:
                continue
            if topic.endswith("/status"):
                _status(topic, payload, shown, cfg, emit)
            else:
                seen += _alert(topic, payload, emit)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return EXIT_OK


def _settle(inbox: queue.Queue) -> list:
    """What arrives until SETTLE_S passes without a message (the retained statuses), at most 5 s."""
    got, deadline = [], time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            got.append(inbox.get(timeout=SETTLE_S))
        except queue.Empty:
            break
    return got


def _printer(as_json: bool):
    def emit(kind: str, body: dict) -> None:
        if as_json:
            print(json.dumps({kind: body}, separators=(",", ":")), flush=True)
        elif kind == "device":
            print(line(body), flush=True)
        else:
            print(f"{body.get('device', '?')}: {describe_alert(body)}", flush=True)
    return emit


def _status(topic: str, payload: bytes, shown: dict, cfg, emit) -> None:
    device = topic.split("/")[-2]
    try:
        doc = json.loads(payload)
    except ValueError:
        return
    if not isinstance(doc, dict):
        return
    s = summary(device, doc, cfg.mqtt.status_interval_s)
    before = shown.get(device)
    if before is not None and not doc.get("sensors"):  # an offline status carries no health: keep the last known
        s.update({k: before[k] for k in ("worst", "learning", "sensors")})
    shown[device] = s
    key = ("state", "worst", "learning")
    if emit is not None and (before is None or any(before[k] != s[k] for k in key)):
        emit("device", s)


def _alert(topic: str, payload: bytes, emit) -> int:
    try:
        body = json.loads(payload)
    except ValueError:
        print(f"{topic}: (not JSON) {payload[:200]!r}", flush=True)
        return 1
    if not isinstance(body, dict):
        return 1
    body.setdefault("device", topic.split("/")[-3])
    emit("alert", body)
    return 1
