"""Signed remote commands: the envelope `pdm-agent model push` publishes and the agent checks.

Wire format (one MQTT message on ``P/D/cmd/<name>``, JSON in UTF-8)::

    {"header": "<JSON text, signed as these exact UTF-8 bytes>",
     "signature": {"algorithm": "ed25519", "key_id": "<16 hex>", "signature": "<base64>"},
     "files": {"manifest.json": "<base64>", "signature.json": "<base64>", "model.onnx": "<base64>"}}

    header = {"format": 1, "command": "model-push", "topic": "pdm/gw-01/cmd/model-push",
              "device": "gw-01", "sensor": "pump1", "allow_downgrade": false,
              "nonce": "<32 hex>", "issued_at": 1796050000.0, "files": {name: sha256 hex}}

The Ed25519 signature (same keys as model bundles, models/bundle.py) covers the header, and the
header pins every file by SHA-256, so one signature covers the flag, the sensor, the device, the
exact topic (prefix and device), the time and the bundle. A captured command cannot be re-aimed
at another device (device and topic are signed), nor used again (the nonce is remembered by the
agent, and `issued_at` older than the agent's `mqtt.command_max_age_s` is refused). The bundle
inside keeps its own signature, which the agent verifies as for any bundle.

Errors are `CommandRefused` with the reason an operator reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass

from agent import topics

FORMAT = 1
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # no path separators, no hidden files
CLOCK_SKEW_S = 60.0  # a command may be issued this far in the gateway's future (clocks differ)


class CommandRefused(Exception):
    """A command that must not be applied; the message is the reason."""


@dataclass(frozen=True)
class Command:
    """A command whose signature was verified; `files` are the decoded, digest-checked files."""

    header: dict
    files: dict  # name -> bytes
    key_id: str

    name = property(lambda self: self.header["command"])
    sensor = property(lambda self: self.header.get("sensor"))
    nonce = property(lambda self: self.header["nonce"])
    allow_downgrade = property(lambda self: self.header.get("allow_downgrade") is True)


def read_bundle_dir(path: str) -> dict[str, bytes]:
    """Every file of a bundle directory (flat: a bundle has no subdirectories). OSError, or
    CommandRefused for a directory that is not a bundle."""
    if not os.path.isdir(path):
        raise CommandRefused(f"{path}: not a bundle directory")
    files = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            raise CommandRefused(f"{path}: {name} is not a file (a bundle directory is flat)")
        with open(full, "rb") as f:
            files[name] = f.read()
    if "manifest.json" not in files:
        raise CommandRefused(f"{path}: no manifest.json (not a model bundle)")
    return files


def build(*, key_path: str, prefix: str, device: str, sensor: str, files: dict[str, bytes],
          allow_downgrade: bool = False, command: str = "model-push", issued_at: float | None = None,
          nonce: str | None = None) -> tuple[str, bytes, dict]:
    """(topic, payload, header) of a signed model-push command. Raises models.bundle.BundleError
    for an unusable private key."""
    from models.bundle import key_id, load_private_key

    key = load_private_key(key_path)
    topic = topics.command(prefix, device, command)
    header = {"format": FORMAT, "command": command, "topic": topic, "device": device, "sensor": sensor,
              "allow_downgrade": bool(allow_downgrade), "nonce": nonce or os.urandom(16).hex(),
              "issued_at": round(time.time() if issued_at is None else issued_at, 3),
              "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items())}}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    sig = {"algorithm": "ed25519", "key_id": key_id(key.public_key()),
           "signature": base64.b64encode(key.sign(text.encode())).decode()}
    body = {"header": text, "signature": sig, "files": {n: base64.b64encode(d).decode() for n, d in files.items()}}
    return topic, json.dumps(body, separators=(",", ":")).encode(), header


def peek_header(payload: bytes) -> dict:
    """`sensor` and `nonce` of a payload WITHOUT checking anything, cut to 64 characters: only to
    say which command a refusal is about (anyone who may publish could have written them)."""
    try:
        header = json.loads(json.loads(payload)["header"])
    except (ValueError, KeyError, TypeError):
        return {}
    if not isinstance(header, dict):
        return {}
    return {k: header[k][:64] for k in ("sensor", "nonce") if isinstance(header.get(k), str)}


def verify(payload: bytes, public_keys, *, topic: str, device: str, max_bytes: int, max_age_s: float,
           now: float | None = None) -> Command:
    """Check a received command, signature first. Raises CommandRefused with the reason.

    Order: size, envelope shape, Ed25519 signature over the header against `public_keys`
    (objects or PEM paths), then the signed header: topic and device are this agent's, the
    command is not older than `max_age_s` nor issued more than CLOCK_SKEW_S in the future,
    and every file matches its signed SHA-256. Remembering nonces is the caller's job.
    """
    from models.bundle import BundleError, load_public_key, not_verified, signed_by

    if len(payload) > max_bytes:
        raise CommandRefused(f"command of {len(payload)} bytes exceeds mqtt.command_max_bytes ({max_bytes})")
    try:
        body = json.loads(payload)
        text, sig, coded = body["header"], body["signature"], body["files"]
        if not isinstance(text, str) or not isinstance(coded, dict) or sig.get("algorithm") != "ed25519":
            raise TypeError
        signature = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise CommandRefused("malformed command: not a signed pdm-agent command envelope") from None
    try:
        keys = [load_public_key(k) if isinstance(k, (str, os.PathLike)) else k for k in public_keys]
    except BundleError as exc:
        raise CommandRefused(str(exc)) from None
    if not keys:
        raise CommandRefused("no trusted public keys configured (models.trusted_keys)")
    signer = signed_by(keys, signature, text.encode())
    if signer is None:
        why = not_verified(keys, sig.get("key_id", "?"), "command")
        raise CommandRefused(f"command signature does not verify: {why}")
    header = json.loads(text)
    _check_header(header, topic=topic, device=device, max_age_s=max_age_s,
                  now=time.time() if now is None else now)
    files = {}
    for name, digest in header["files"].items():
        try:
            data = base64.b64decode(coded[name], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise CommandRefused(f"command file {name!r} missing or not base64") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CommandRefused(f"command file {name!r}: SHA-256 mismatch (changed after signing)")
        files[name] = data
    extra = sorted(set(coded) - set(header["files"]))
    if extra:
        raise CommandRefused(f"command files not covered by the signature: {', '.join(extra)}")
    return Command(header, files, signer)


def _check_header(header, *, topic: str, device: str, max_age_s: float, now: float) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CommandRefused(f"unsupported command format {header.get('format') if isinstance(header, dict) else None!r}")
    for key, kind in (("command", str), ("topic", str), ("device", str), ("nonce", str), ("files", dict)):
        if not isinstance(header.get(key), kind):
            raise CommandRefused(f"command header: {key!r} missing or not a {kind.__name__}")
    if not re.fullmatch(r"[0-9a-f]{16,64}", header["nonce"]):
        raise CommandRefused("command header: 'nonce' must be 16-64 lowercase hex digits")
    bad = [n for n in header["files"] if not isinstance(n, str) or not FILE_NAME.fullmatch(n)]
    if bad:
        raise CommandRefused(f"command header: invalid file name {bad[0]!r} (a bundle is one flat directory)")
    if header["device"] != device or header["topic"] != topic:
        raise CommandRefused(f"command signed for {header['topic']!r} (device {header['device']!r}), "
                             f"received on {topic!r}: it was meant for another device or topic")
    issued = header.get("issued_at")
    if not isinstance(issued, (int, float)) or isinstance(issued, bool):
        raise CommandRefused("command header: 'issued_at' missing or not a number")
    age = now - issued
    if age > max_age_s:
        raise CommandRefused(f"command expired: issued {age:.0f} s ago, mqtt.command_max_age_s is {max_age_s:g} "
                             "(an old command replayed, or this gateway's clock is wrong)")
    if age < -CLOCK_SKEW_S:
        raise CommandRefused(f"command issued {-age:.0f} s in this gateway's future: check the clocks (NTP)")
