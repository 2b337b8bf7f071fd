"""`pdm-agent model push DIR --config FILE --sensor NAME [--device ID]`: a signed bundle to a gateway.

Publishes the bundle in DIR, inside a signed command envelope (agent/command_envelope.py), on the
device's command topic ``P/D/cmd/model-push`` (QoS 1, not retained) of the broker in FILE, then
waits for the device's answer in its retained status (``commands.last`` with this command's id).

The envelope is signed with `--key FILE` (default `$PDM_AGENT_SIGNING_KEY`): the private key
whose public half is in the device's `models.trusted_keys`. The signature covers the sensor, the
device, the topic, the time, a fresh nonce, every file of the bundle and `--allow-downgrade`.

Exit codes: 0 applied; 2 refused (the device's reason is printed), or invalid usage, or the device
does not accept commands; 1 no answer within `--timeout` (default 60 s), the device is offline,
or the broker cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
KEY_ENV = "PDM_AGENT_SIGNING_KEY"
MQTT_MAX_PACKET = 268_435_455  # the largest packet MQTT can express (its 4-byte remaining length)
RETAINED_WAIT_S = 3.0


def add_parser(msub) -> None:
    """`model push`, attached to the `model` command group (agent/model_cli.py)."""
    from agent.cli_config import _config_arg

    p = msub.add_parser("push", help="send a signed bundle to a gateway over MQTT; exit 0 applied, 2 refused, "
                                     "1 no answer")
    p.add_argument("dir", metavar="DIR", help="the signed bundle directory")
    _config_arg(p)
    p.add_argument("--sensor", required=True, metavar="NAME", help="the sensor on the device that gets the bundle")
    p.add_argument("--device", metavar="ID", help="the gateway's device.id (default: device.id of --config)")
    p.add_argument("--key", metavar="FILE", help=f"private key that signs the command (default: ${KEY_ENV})")
    p.add_argument("--allow-downgrade", action="store_true",
                   help="let the device install a bundle that is not newer than the one it runs (signed)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the device's answer (default 60)")
    p.set_defaults(func=main)


def _err(msg: str, code: int) -> int:
    print(f"pdm-agent model push: {msg}", file=sys.stderr)
    return code


def main(args) -> int:
    from agent.cli_config import _config_path, _load_or_report
    from agent.command_envelope import CommandRefused, build, read_bundle_dir
    from models.bundle import BundleError

    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    if not args.timeout > 0:
        return _err(f"--timeout: must be a number of seconds > 0; got {args.timeout:g}", EXIT_USAGE)
    key = args.key or os.environ.get(KEY_ENV)
    if not key:
        return _err(f"the command must be signed: give --key FILE (the private key whose .pub the device lists "
                    f"in models.trusted_keys) or set ${KEY_ENV}", EXIT_USAGE)
    device = args.device or cfg.device.id
    if not re.fullmatch(r"[A-Za-z0-9_-]+", device) or not re.fullmatch(r"[A-Za-z0-9_-]+", args.sensor):
        return _err(f"--device {device!r} / --sensor {args.sensor!r}: only letters, digits, '_' and '-' "
                    "(as device.id and sensor names)", EXIT_USAGE)

    try:
        files = read_bundle_dir(args.dir)
        version = json.loads(files["manifest.json"]).get("version", "?")
        if "signature.json" not in files:
            return _err(f"{args.dir} is not signed (no signature.json): pdm-agent model sign {args.dir} --key KEY",
                        EXIT_USAGE)
        topic, payload, header = build(key_path=key, prefix=cfg.mqtt.topic_prefix, device=device,
                                       sensor=args.sensor, files=files, allow_downgrade=args.allow_downgrade)
    except (CommandRefused, BundleError) as exc:
        return _err(str(exc), EXIT_USAGE)
    except (OSError, ValueError, AttributeError) as exc:
        return _err(f"{args.dir}: cannot read the bundle ({exc})", EXIT_USAGE)
    limit = cfg.mqtt.max_packet_bytes or MQTT_MAX_PACKET
    if len(payload) + len(topic) + 16 > limit:
        which = "mqtt.max_packet_bytes" if cfg.mqtt.max_packet_bytes else "the MQTT packet limit"
        return _err(f"the command is {len(payload)} bytes (the bundle base64-encoded), over {which} ({limit}); "
                    "ship a smaller variant (model quantize, or --variant pruned)", EXIT_USAGE)
    return _send(cfg, path, device, args, topic, payload, header, version)


def _send(cfg, path, device, args, topic, payload, header, version) -> int:
    from agent.mqtt_client import BrokerError, Subscription

    deadline = time.monotonic() + args.timeout
    from agent import topics

    status_topic = topics.status(cfg.mqtt.topic_prefix, device)
    cond = threading.Condition()
    latest: list[dict] = []

    def on_message(_topic, body, _retain):
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if isinstance(doc, dict):
            with cond:
                latest.append(doc)
                cond.notify_all()

    sub = Subscription(cfg.mqtt, [status_topic], on_message, role="push", config_path=path)
    try:
        sub.start()
        sub.wait_subscribed(max(0.1, min(10.0, deadline - time.monotonic())))
        with cond:
            cond.wait_for(lambda: latest, timeout=RETAINED_WAIT_S)
            doc = latest[-1] if latest else None
        if doc is None:
            return _err(f"no status of device {device!r} on {sub.where} ({status_topic}): is it running against this "
                        "broker with this topic_prefix? nothing was sent", EXIT_FAIL)
        if doc.get("state") != "online":
            return _err(f"device {device!r} is {doc.get('state', 'unknown')} (status at {doc.get('ts')}); nothing was "
                        "sent (commands reach only a connected agent)", EXIT_FAIL)
        if not (doc.get("commands") or {}).get("enabled"):
            return _err(f"refused: device {device!r} does not accept remote commands (mqtt.commands is off in its "
                        "config, or its version predates them); nothing was sent", EXIT_USAGE)
        if not doc["commands"].get("listening", True):
            print(f"waiting for {device}'s command channel to connect", file=sys.stderr, flush=True)
            with cond:
                cond.wait_for(lambda: (latest[-1].get("commands") or {}).get("listening"),
                              timeout=max(0.0, deadline - time.monotonic()))
            if not (latest[-1].get("commands") or {}).get("listening"):
                return _err(f"device {device!r} is online but its command channel is not connected to the broker "
                            f"(see its log); nothing was sent", EXIT_FAIL)
        print(f"pushing {args.dir} (version {version}, {len(payload)} bytes) to {device}/{args.sensor} on {sub.where}",
              file=sys.stderr, flush=True)
        info = sub.client.publish(topic, payload, qos=1, retain=False)
        try:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        except (RuntimeError, ValueError):
            pass  # connection lost meanwhile: said below
        if not info.is_published():
            return _err(f"the broker did not take the command ({len(payload)} bytes) within {args.timeout:g} s; a "
                        "broker closes the connection on a packet over its max_packet_size", EXIT_FAIL)
        return _answer(cond, latest, header["nonce"], deadline, device, args.timeout)
    except BrokerError as exc:
        return _err(str(exc), EXIT_FAIL)
    finally:
        sub.close()


def _answer(cond, latest, nonce, deadline, device, timeout) -> int:
    def mine():
        for doc in reversed(latest):
            last = (doc.get("commands") or {}).get("last")
            if isinstance(last, dict) and last.get("id") == nonce:
                return last
        return None

    with cond:
        cond.wait_for(lambda: mine() is not None, timeout=max(0.0, deadline - time.monotonic()))
        last = mine()
    if last is None:
        return _err(f"no answer from {device!r} within {timeout:g} s (it went offline, or the broker dropped the "
                    "message: check the broker's max_packet_size / message_size_limit and its ACL)", EXIT_FAIL)
    if last.get("result") == "applied":
        print(f"applied on {device}/{last.get('sensor')}: {last.get('reason')}")
        return EXIT_OK
    print(f"refused by {device}: {last.get('reason')}", file=sys.stderr)
    return EXIT_USAGE
