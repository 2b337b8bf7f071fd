"""`pdm-agent watch [--config FILE] [--json] [--aggregates]`: alerts as they arrive, one line each.

Subscribes to `P/D/+/alert` (and `P/D/+/aggregate` with `--aggregates`) on the broker in the
config, with its TLS and credentials, and prints every message until interrupted (Ctrl-C: exit
0). `--json` prints each payload as it arrived (one JSON document per line, for scripts);
otherwise a line says what was measured against what (alert_text.py). A lost broker connection
is reported on stderr and retried; messages published meanwhile reach `watch` only if the
broker kept them (alerts are QoS 1, but this subscriber's session is not persistent).
"""

from __future__ import annotations

import json
import queue
import sys

from agent import topics
from agent.alert_text import describe_aggregate, describe_alert

from agent.exit_codes import EXIT_FAIL, EXIT_OK, EXIT_USAGE  # noqa: E402,F401 (one definition)


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print each message's JSON payload, one per line")
    p.add_argument("--aggregates", action="store_true", help="also print aggregates")
    p.add_argument("--sensor", metavar="NAME", help="only this sensor (default: all)")
    p.add_argument("--count", type=int, metavar="N", help="exit 0 after N messages (default: run until interrupted)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the broker at start before exit 1 (default 10)")
    p.add_argument("--fleet", action="store_true", help="every device under the topic prefix (online/offline, "
                   "worst level, sensors learning), then all their alerts (agent/fleet_view.py)")
    p.add_argument("--share", metavar="GROUP", help="MQTT 5 shared subscription $share/GROUP/... for the alerts: "
                   "consumers in one group split them, each alert to one of them (docs/fleet.md)")


def main(args) -> int:
    from agent.cli_config import _config_path, _load_or_report
    from agent.mqtt_client import BrokerError, Subscription

    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    if args.count is not None and args.count < 1:
        print(f"--count: must be at least 1; got {args.count}", file=sys.stderr)
        return EXIT_USAGE
    if not args.timeout > 0:
        print(f"--timeout: must be a number of seconds > 0; got {args.timeout:g}", file=sys.stderr)
        return EXIT_USAGE
    if args.share is not None and (not args.share or any(c in args.share for c in "/+#")):
        print(f"--share: a group name without '/', '+' or '#'; got {args.share!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.fleet and args.aggregates:
        print("--aggregates: not with --fleet (the fleet view follows alerts)", file=sys.stderr)
        return EXIT_USAGE
    if args.fleet:
        from agent.fleet_view import run

        return run(args, cfg, path)
    kinds = ("alert", "aggregate") if args.aggregates else ("alert",)
    subscribe = [topics.record(cfg.mqtt.topic_prefix, cfg.device.id, args.sensor or "+", kind) for kind in kinds]
    subscribe = [topics.shared(args.share, t) for t in subscribe] if args.share else subscribe
    inbox: queue.Queue = queue.Queue()
    sub = Subscription(cfg.mqtt, subscribe, lambda t, p, r: inbox.put((t, p)), role="watch", config_path=path)
    try:
        sub.open(args.timeout)
    except BrokerError as exc:
        print(f"pdm-agent watch: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"watching {', '.join(subscribe)} on {sub.where} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    seen = 0
    reported_loss = False
    try:
        while args.count is None or seen < args.count:
            try:
                topic, payload = inbox.get(timeout=1.0)
            except queue.Empty:
                if sub.lost.is_set() and not reported_loss:
                    reported_loss = True
                    print(f"pdm-agent watch: connection to {sub.where} lost; reconnecting", file=sys.stderr, flush=True)
                elif reported_loss and not sub.lost.is_set():
                    reported_loss = False
                    print(f"pdm-agent watch: connected to {sub.where} again", file=sys.stderr, flush=True)
                continue
            seen += 1
            if args.json:
                print(payload.decode("utf-8", "replace"), flush=True)
                continue
            try:
                body = json.loads(payload)
            except ValueError:
                print(f"{topic}: (not JSON) {payload[:200]!r}", flush=True)
                continue
            text = describe_aggregate(body) if topic.endswith("/aggregate") else describe_alert(body)
            print(text, flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how watch is meant to end
    finally:
        sub.close()
    return EXIT_OK
