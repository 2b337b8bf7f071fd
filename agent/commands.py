"""Signed remote commands on a running agent (off unless `mqtt.commands: true`).

The agent subscribes to its own ``P/D/cmd/+`` on its broker (a second connection, client id
``<mqtt client id>-cmd-<pid>``, so the publisher's connection and its Last Will are untouched).
paho's thread only queues what arrives; the main loop calls `CommandChannel.poll()` about once a
second and handles one command at a time:

1. the envelope's Ed25519 signature against `models.trusted_keys`, before anything else
   (agent/command_envelope.py: size, signature, device and topic, age, file digests);
2. the nonce must be new: nonces are kept in ``storage.dir/commands.json`` (written before the
   command is applied), so a captured command cannot be replayed, also after a restart;
3. ``model-push``: the bundle is staged under ``storage.dir/pushed/<sensor>/`` (sealed with
   ``storage.encrypt: true``, agent/pushed_bundles.py) and verified as
   any bundle (its own signature, file hashes, features, a smoke test; agent/hotswap.py);
   its version must be newer than the running bundle's unless the signed header says
   ``allow_downgrade``; it becomes the sensor's current pushed bundle (which a restart runs),
   then it is swapped in without a restart (guarded: rolled back, on disk too, at its first
   scoring failure).

Every result, applied or refused, is logged and shown on the status topic as
``commands.last = {name, sensor, result: applied|refused, reason, ts, id}`` (``id`` is the
command's nonce, so `pdm-agent model push` recognises the answer to its own command).
"""

from __future__ import annotations

import json
import os
import queue
import re
import time

from agent import pushed_bundles, topics
from agent.command_envelope import CommandRefused, peek_header, verify
from agent.records import iso_utc

STATE_FILE = "commands.json"
QUEUE_MAX = 4  # commands waiting for the main loop; a flood beyond it is dropped with a log line
SEEN_MAX = 10_000  # remembered nonces (oldest forgotten first; they are long expired by then)
SEEN_MARGIN_S = 86_400.0  # nonces are kept this much longer than mqtt.command_max_age_s


def version_key(version: str) -> list:
    """Order of bundle versions: digit runs compare as numbers, the rest as text, so
    ``v2 < v10``, ``1.9 < 1.10`` and UTC timestamps sort by time.

    >>> sorted(["v10", "v2", "v1"], key=version_key)
    ['v1', 'v2', 'v10']
    """
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.findall(r"\d+|\D+", str(version))]


class CommandChannel:
    """Receives, checks and applies signed commands for the Service `svc` (agent/service.py)."""

    def __init__(self, svc) -> None:
        self.svc = svc
        self.log = svc.log
        self._sub = None
        self._key = None  # (mqtt settings, device, enabled) the subscription was made for
        self._inbox: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self.listening = False  # subscribed to the command topics right now
        self._state = self._read_state()

    # -- persistence ---------------------------------------------------------------------------
    @property
    def _path(self) -> str:
        return os.path.join(self.svc.storage_dir, STATE_FILE)

    def _read_state(self) -> dict:
        try:
            with open(self._path) as f:
                state = json.load(f)
            if isinstance(state, dict) and isinstance(state.get("seen"), dict):
                return state
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            self.log.warning("command state unreadable; starting a new one", path=self._path, error=str(exc))
        return {"seen": {}, "last": None}

    def _write_state(self) -> None:
        tmp = self._path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def _remember(self, nonce: str, issued_at: float, max_age_s: float) -> None:
        seen = self._state["seen"]
        horizon = time.time() - max_age_s - SEEN_MARGIN_S
        for old in [n for n, t in seen.items() if not isinstance(t, (int, float)) or t < horizon]:
            del seen[old]
        while len(seen) >= SEEN_MAX:
            del seen[min(seen, key=seen.get)]
        seen[nonce] = issued_at
        try:
            self._write_state()
        except OSError as exc:
            seen.pop(nonce, None)
            raise CommandRefused(f"cannot record the command in {self._path} ({exc.strerror or exc}); "
                                 "a command that could be replayed is not applied") from None

    # -- the subscription ----------------------------------------------------------------------
    def _sync(self, cfg) -> None:
        key = (cfg.mqtt, cfg.device.id, cfg.mqtt.commands)
        if key == self._key:
            return
        self.stop()
        self._key = key
        if not cfg.mqtt.commands:
            return
        from agent.mqtt_client import BrokerError, Subscription

        topic = topics.command(cfg.mqtt.topic_prefix, cfg.device.id, "+")
        try:
            self._sub = Subscription(cfg.mqtt, [topic], self._arrived, role="cmd", config_path=self.svc.config_path)
            self._sub.start()
        except (BrokerError, OSError, ValueError) as exc:  # e.g. the password file went away
            self.log.error("remote commands unavailable until a restart or a change of the mqtt settings", error=str(exc))
            return
        self.log.info("accepting signed remote commands", topic=topic)

    def _arrived(self, topic: str, payload: bytes, retain: bool) -> None:
        """paho's thread: queue only."""
        if retain:  # `model push` never retains: a retained command would come back at every connect
            self.log.warning("retained command ignored (commands are published without retain)", topic=topic)
            return
        try:
            self._inbox.put_nowait((topic, payload))
        except queue.Full:
            self.log.warning("command dropped: earlier commands are still being applied", topic=topic)

    def stop(self) -> None:
        self.listening = False
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._key = None

    # -- applying -------------------------------------------------------------------------------
    def poll(self) -> bool:
        """Main loop: follow the config, then handle the commands that arrived. True when a
        result was recorded or the command channel connected or was lost (the caller publishes the
        status at once)."""
        cfg = self.svc.cfg
        self._sync(cfg)
        listening = self._sub is not None and self._sub.wait_reconnected(0)
        handled, self.listening = listening != self.listening, listening  # a change is news for `model push`
        while True:
            try:
                topic, payload = self._inbox.get_nowait()
            except queue.Empty:
                return handled
            self._handle(cfg, topic, payload)
            handled = True

    def _handle(self, cfg, topic: str, payload: bytes) -> None:
        peek = peek_header(payload)
        result = {"name": topic.rsplit("/", 1)[-1][:64],
                  "sensor": peek.get("sensor") if isinstance(peek.get("sensor"), str) else None,
                  "id": peek.get("nonce") if isinstance(peek.get("nonce"), str) else None}
        try:
            cmd = verify(payload, cfg.models.trusted_keys, topic=topic, device=cfg.device.id,
                         max_bytes=cfg.mqtt.command_max_bytes, max_age_s=cfg.mqtt.command_max_age_s)
            if cmd.nonce in self._state["seen"]:
                raise CommandRefused("replayed command: its nonce was used before (each push is signed anew)")
            self._remember(cmd.nonce, float(cmd.header["issued_at"]), cfg.mqtt.command_max_age_s)
            if cmd.name != "model-push":
                raise CommandRefused(f"unknown command {cmd.name!r} (this agent knows: model-push)")
            reason = self._model_push(cmd)
            result.update(result="applied", reason=reason)
            self.log.info("remote command applied", command=cmd.name, sensor=cmd.sensor, key_id=cmd.key_id,
                          detail=reason)
        except CommandRefused as exc:
            result.update(result="refused", reason=str(exc))
            self.log.warning("remote command refused", command=result["name"], sensor=result["sensor"],
                             reason=str(exc))
        except Exception as exc:  # a command must never take the agent down
            self.log.exception("remote command failed", command=result["name"], sensor=result["sensor"])
            result.update(result="refused", reason=f"failed on the device: {exc!r}"[:300])
        self._state["last"] = {**result, "ts": iso_utc(time.time())}
        try:
            self._write_state()  # the last result survives a restart, as the status shows it
        except OSError as exc:
            self.log.warning("could not save the command result", error=str(exc))

    def _model_push(self, cmd) -> str:
        from agent.hotswap import sensor_features
        from models.bundle import BundleError

        svc, sensor = self.svc, cmd.sensor
        worker = svc.workers.get(sensor) if isinstance(sensor, str) else None
        if worker is None:
            raise CommandRefused(f"no sensor {sensor!r} runs on this device (sensors: {', '.join(svc.workers) or 'none'})")
        try:
            path = pushed_bundles.stage(svc.storage_dir, sensor, cmd.nonce, cmd.files, svc.models.sealer)
        except OSError as exc:
            raise CommandRefused(f"cannot store the bundle under {svc.storage_dir}: {exc.strerror or exc}") from None
        try:
            model, bundle = svc.models.load(sensor, path, sensor_features(worker.cfg))
            running = svc.models.running_bundle_version(sensor)
            if running is not None and not version_key(bundle.version) > version_key(running):
                if not cmd.allow_downgrade:
                    raise CommandRefused(f"bundle version {bundle.version} is not newer than the running {running} "
                                         "(push with --allow-downgrade to go back on purpose)")
            # On disk first, then swapped: a rollback at the very first window then finds it `current`
            # and restores `previous`; a bundle that cannot be made permanent is not run at all.
            pushed_bundles.commit(svc.storage_dir, sensor, path)
        except BundleError as exc:
            pushed_bundles.discard(path)
            raise CommandRefused(f"bundle refused: {exc}") from None
        except CommandRefused:
            pushed_bundles.discard(path)
            raise
        except OSError as exc:
            pushed_bundles.discard(path)
            raise CommandRefused(f"cannot install the bundle under {svc.storage_dir}: {exc.strerror or exc}") from None
        before = worker.pipeline.model_name
        try:
            svc.models.swap_in(sensor, model, bundle)
        except Exception:
            pushed_bundles.roll_back(svc.storage_dir, sensor, path)
            raise
        downgrade = running is not None and version_key(bundle.version) <= version_key(running)
        return f"{model.model} swapped in (was {before})" + (" by a signed downgrade" if downgrade else "")

    def status(self) -> dict:
        """`commands` on the status topic."""
        cfg = self.svc.cfg
        out = {"enabled": bool(cfg.mqtt.commands), "last": self._state.get("last")}
        if cfg.mqtt.commands:
            out.update(topic=topics.command(cfg.mqtt.topic_prefix, cfg.device.id, "+"), listening=self.listening)
        return out
