"""`pdm-agent status [--config FILE] [--json]`: what the agent is doing, for a person on the gateway.

Reads the agent's retained status (`P/D/status`) from the broker in the config, with the config's
TLS and credentials. When the broker cannot be reached, or holds no status for this device, it
reads the copy the agent keeps in `storage.dir/status.json`; that copy counts as online only
while the pid in `storage.dir/pdm-agent.pid` is a running pdm-agent. Exit 0 when the agent is
online, 1 when it is offline or unknown, 2 for an invalid config.
"""

from __future__ import annotations

import json
import sys
import threading

from agent import topics
from agent import status_file
from agent.alert_text import describe_alert
from agent.diagnosis import diagnosis_text

from agent.exit_codes import EXIT_FAIL, EXIT_OK, EXIT_USAGE  # noqa: E402,F401 (one definition)


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print the status document (JSON) instead of text")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds to wait for the broker's answer before reading the local copy (default 5)")


def fetch_from_broker(cfg, config_path: str, timeout: float) -> tuple[dict | None, str]:
    """The retained status document (or None) and a note saying where it came from or why not."""
    from agent.mqtt_client import BrokerError, Subscription

    topic = topics.status(cfg.mqtt.topic_prefix, cfg.device.id)
    got: list[dict] = []
    arrived = threading.Event()

    def on_message(_topic, payload, _retain):
        try:
            got.append(json.loads(payload))
        except ValueError:
            return
        arrived.set()

    sub = Subscription(cfg.mqtt, [topic], on_message, role="status", config_path=config_path)
    try:
        sub.start()
        sub.wait_subscribed(timeout)
        # A retained message is delivered right after SUBACK; allow a moment for it.
        arrived.wait(min(2.0, timeout))
    except BrokerError as exc:
        return None, str(exc)
    finally:
        sub.close()
    if not got:
        return None, f"the broker at {sub.where} holds no status on {topic} (agent never connected there?)"
    return got[-1], f"from the broker at {sub.where}"


def fetch_local(cfg) -> tuple[dict | None, str]:
    import os

    storage = str(cfg.storage.dir)
    doc = status_file.read(storage)
    if doc is None:
        path = os.path.join(storage, status_file.NAME)
        if os.path.exists(path) and not os.access(path, os.R_OK):
            return None, f"{path} is not readable by this user (try sudo)"
        return None, f"no local status in {storage} (the agent has not run with this config?)"
    if doc.get("state") == "online" and status_file.agent_pid(storage) is None:
        doc = {**doc, "state": "offline"}
        return doc, f"from {storage}/{status_file.NAME} (written {doc.get('ts')}; the agent is not running)"
    return doc, f"from {storage}/{status_file.NAME} (written {doc.get('ts')})"


def _stale(doc: dict, status_interval_s: float) -> float | None:
    """Age in seconds of an `online` document that should have been refreshed by now (the
    agent rewrites it every `status_interval_s`), else None. An agent stopped while the broker
    was down leaves a retained `online` that no Will replaces."""
    from datetime import datetime, timezone

    try:
        ts = datetime.fromisoformat(str(doc.get("ts")).replace("Z", "+00:00"))
    except ValueError:
        return None
    age = (datetime.now(timezone.utc) - ts).total_seconds()
    return age if doc.get("state") == "online" and age > 3 * status_interval_s + 10 else None


def _baseline(entry: dict) -> str:
    """The baseline field has been a plain state string and is becoming a document
    ({state, progress, windows, learned_at, reason}); read either."""
    b = entry.get("baseline")
    if isinstance(b, dict):
        text = str(b.get("state", "?"))
        if isinstance(b.get("progress"), (int, float)) and b.get("state") == "learning":
            text += f" {b['progress']:.0%}"
        if b.get("learned_at"):
            text += f" (learned {b['learned_at']})"
        if b.get("reason"):
            text += f" ({b['reason']})"
        return text
    return str(b) if b is not None else "?"


def _fleet(entry: dict) -> list[str]:
    """`sensors.<name>.fleet` (docs/federated.md) and an encrypted baseline refused (docs/privacy.md), in
    words: without them a refused prior looked like any sensor learning its own baseline."""
    out = []
    refused = (entry.get("baseline") or {}).get("refused") if isinstance(entry.get("baseline"), dict) else None
    if isinstance(refused, dict):
        out.append(f"  baseline refused: {refused.get('reason', '?')}; learning anew")
    fleet = entry.get("fleet")
    if not isinstance(fleet, dict):
        return out
    if isinstance(shared := fleet.get("shared"), dict):
        privacy = shared.get("privacy")
        how = (f"private: epsilon {privacy.get('epsilon')}, {privacy.get('covariance')} covariance"
               if isinstance(privacy, dict) else "exact")
        out.append(f"  fleet: shared on {shared.get('topic')} ({shared.get('windows')} windows learned "
                   f"{shared.get('learned_at')}; {how})")
    if isinstance(not_shared := fleet.get("not_shared"), dict):
        out.append(f"  fleet: not shared: {not_shared.get('reason', '?')}")
    if isinstance(prior := fleet.get("prior"), dict):
        out.append(f"  fleet: started from the prior {prior.get('path')} ({prior.get('machine_type')}, "
                   f"{prior.get('windows')} windows of {prior.get('machines')} machine(s))")
    if isinstance(fit := fleet.get("prior_fit"), dict):
        out.append(f"  fleet prior does not fit: {fit.get('note', '?')}")
    if isinstance(refused := fleet.get("prior_refused"), dict):
        out.append(f"  fleet prior refused ({refused.get('path')}): {refused.get('reason', '?')}; "
                   "the sensor learns its own baseline instead")
    return out


def render(doc: dict, source: str, device: str) -> str:
    state = doc.get("state", "unknown")
    lines = [f"pdm-agent {doc.get('device', device)}: {state} (version {doc.get('version', '?')}, "
             f"status at {doc.get('ts', '?')}, {source})"]
    if doc.get("will"):
        lines.append(f"  the broker published the agent's Last Will: its connection (made {doc.get('connected_at')})"
                     f" was lost without a goodbye")
    if isinstance(conflict := doc.get("identity_conflict"), dict):  # agent/identity.py
        lines.append(f"  identity conflict since {conflict.get('since')}: {conflict.get('fix')}")
    if state != "online":
        if not doc.get("sensors"):
            return "\n".join(lines)
        lines.append("  as of that status:")
    uptime = doc.get("uptime_s")
    outbox = doc.get("outbox") or {}
    extra = []
    if isinstance(uptime, (int, float)):
        extra.append(f"up {int(uptime) // 3600}h{int(uptime) % 3600 // 60:02d}m")
    if outbox:
        extra.append(f"outbox {outbox.get('alerts', 0)} alerts, {outbox.get('aggregates', 0)} aggregates pending")
    if extra:
        lines.append("  " + ", ".join(extra))
    for name, s in (doc.get("sensors") or {}).items():
        if not isinstance(s, dict):
            continue
        health = (s.get("health") or {}).get("state") if isinstance(s.get("health"), dict) else None
        health = health or ("ok" if s.get("online") else "offline")
        cond = str(s.get("condition", s.get("alert_level", "?")))
        cond = cond.upper() if cond in ("warning", "alarm") else cond
        score = s.get("last_score")
        lines.append(f"{name}: {cond}  health {health}  baseline {_baseline(s)}  windows {s.get('windows', '?')}"
                     + (f"  last score {score:.2f}" if isinstance(score, (int, float)) else ""))
        levels = s.get("levels")
        if isinstance(levels, dict) and levels:
            lines.append("  alerts active: " + ", ".join(f"{k} {v}" for k, v in levels.items()))
        if isinstance(s.get("last_alert"), dict):
            lines.append("  last alert: " + describe_alert(s["last_alert"]))
        if isinstance(s.get("diagnosis"), dict):  # docs/diagnosis.md
            lines.append(f"  latest diagnosis ({s['diagnosis'].get('ts', '?')}): {diagnosis_text(s['diagnosis'])}")
        lines += _fleet(s)
        if s.get("error"):
            lines.append(f"  error: {s['error']}")
    return "\n".join(lines)


def main(args) -> int:
    from agent.cli_config import _config_path, _load_or_report

    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    if not args.timeout > 0:
        print(f"--timeout: must be a number of seconds > 0; got {args.timeout:g}", file=sys.stderr)
        return EXIT_USAGE
    doc, source = fetch_from_broker(cfg, path, args.timeout)
    if doc is None:
        why = source
        doc, source = fetch_local(cfg)
        source = f"{source}; broker: {why}"
    if doc is None:
        print(f"pdm-agent {cfg.device.id}: unknown ({source})", file=sys.stderr)
        return EXIT_FAIL
    age = _stale(doc, cfg.mqtt.status_interval_s)
    if age is not None:
        doc = {**doc, "state": "unknown"}
        source += (f"; it says online but is {age:.0f} s old, refreshed every {cfg.mqtt.status_interval_s:g} s:"
                   f" the agent or its link is down")
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(render(doc, source, cfg.device.id))
    return EXIT_OK if doc.get("state") == "online" else EXIT_FAIL
