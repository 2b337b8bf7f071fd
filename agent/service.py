"""The daemon: builds everything from the config, runs it, stops it in order.

Start order is the Telegraf one: outbox, publisher, pipelines, then sources; stop is the
reverse, so nothing produced is left without somewhere to go. Signal handlers only set
flags; the main loop turns them into a reload or a stop. The systemd watchdog is fed only
while every sensor worker and the publisher make progress.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time

from agent import __version__, fleet_privacy, privacy_setup, status, status_file, topics
from agent.alert_state import AlertLevels
from agent.commands import CommandChannel
from agent.config import Config, ConfigError, load_config
from agent.control import ControlServer, serve, socket_path
from agent.diagnosis import alert_bytes
from agent.discovery import DiscoveryFeed
from agent.fleet_share import FleetShare
from agent.health import CpuMeter
from agent.hotswap import ModelManager
from agent.logs import Every
from agent.storage import Store
from agent.pipeline import SensorPipeline
from agent.publisher import Publisher
from agent.records import Aggregate, Alert, iso_utc
from agent.systemd import Notifier
from agent.worker import SensorWorker

STALL_S = 30.0  # a stage silent this long is stalled: the watchdog is no longer fed
SAVE_EVERY_S = 300.0  # learned baselines are checkpointed this often (and at stop)


class Service:
    """The daemon's lifecycle: build the outbox, publisher, sensor workers and control socket from the
    configuration (`start`), run the main loop (`run`: signals -> flags, reloads, checkpoints,
    watchdog, status), and stop in order (`stop`: sensors first, then the publisher; pending
    messages stay in the outbox). Topics, the status document and reload planning live in
    agent/topics.py, agent/status.py and agent/reload.py."""

    def __init__(self, config_path: str, log, cfg: Config | None = None) -> None:
        self.config_path = config_path
        self.log = log
        self.cfg: Config = cfg if cfg is not None else load_config(config_path)  # the CLI has read it already
        self.notifier = Notifier()
        self.started = time.time()
        self.cpu = CpuMeter()
        # Set by signal handlers, so plain flags: a handler that took a lock (Event.set) could
        # interrupt the main thread while it holds that same lock and deadlock it. The
        # socketpair wakes the main loop at once (signal.set_wakeup_fd writes to it in C).
        self._stop_requested = False
        self._reload_requested = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.workers: dict[str, SensorWorker] = {}
        self.models = ModelManager(self.cfg.models.trusted_keys, log, self.cfg.models.watch_interval_s,
                                   storage_dir=self.storage_dir)  # bundles, also those pushed over MQTT
        self.fleet = FleetShare(log, __version__, self.storage_dir)  # federated baselines: shares and prior (docs/federated.md)
        self.commands = CommandChannel(self)  # signed remote commands (mqtt.commands), agent/commands.py
        self._dropped_logged = 0
        self._warn_drop = Every(30.0)
        self.levels = AlertLevels(str(self.cfg.storage.dir))
        self.outbox: Store | None = None
        self.publisher: Publisher | None = None
        self.stall_s = STALL_S
        self.discovery = DiscoveryFeed(__version__)
        self.last_reload: dict = {"ts": None, "result": "none"}
        self._status_file_due = True
        self._status_text = ""
        self.control: ControlServer | None = None
        self._save_due: set[str] = set()  # sensors whose baseline just finished learning

    # -- signals: set a flag, nothing more -------------------------------------------------
    def install_signals(self) -> None:
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True

    def request_stop(self) -> None:
        """Stop from another thread (tests, embedding)."""
        self._stop_requested = True
        self.request_wake()

    def request_wake(self) -> None:
        """Run the main loop's tick now rather than within a second."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _sleep(self, seconds: float) -> None:
        """Wait up to `seconds`, returning early when a signal or request_stop arrives."""
        if not (self._stop_requested or self._reload_requested):
            select.select([self._wake_r], [], [], seconds)
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    # -- building ------------------------------------------------------------------------
    @property
    def storage_dir(self) -> str:
        return str(self.cfg.storage.dir)

    def _emit(self, record: Alert | Aggregate) -> None:
        kind = "alert" if isinstance(record, Alert) else "aggregate"
        topic = topics.record(self.cfg.mqtt.topic_prefix, self.cfg.device.id, record.sensor, kind)
        if isinstance(record, Alert):
            payload, left_out = alert_bytes(record, topic, self.cfg.mqtt.max_packet_bytes)
            if left_out:
                self.log.warning(f"alert over mqtt.max_packet_bytes with its diagnosis: sent without {left_out}",
                                 sensor=record.sensor, id=record.id, max_packet_bytes=self.cfg.mqtt.max_packet_bytes)
        else:
            payload = json.dumps(record.payload(), separators=(",", ":")).encode()
        self.outbox.offer(topic, payload, kind, record.sensor)
        if isinstance(record, Alert):
            try:
                self.levels.record(record)
            except OSError as exc:
                self.log.warning("could not persist the alert level", sensor=record.sensor, error=str(exc))
        if self.publisher is not None:
            self.publisher.wake()
            if isinstance(record, Alert):  # the status's levels and last alert changed
                self.publisher.refresh_status()
                self._status_file_due = True
        dropped = sum(self.outbox.dropped.values()) - sum(self.outbox.rejected.values())  # by the bound
        if dropped > self._dropped_logged and self._warn_drop.ready():
            self._dropped_logged = dropped
            self.log.warning("outbox full: oldest aggregates dropped (alerts are kept)",
                             max_outbox_mb=self.cfg.storage.max_outbox_mb, **{
                                 f"dropped_{k}s": v for k, v in self.outbox.dropped.items()})

    def _make_publisher(self) -> Publisher:
        # Home Assistant discovery (off by default) and fleet shares (agent/fleet_share.py) ride on the
        # publisher: retained, after every connect.
        return Publisher(self.cfg.mqtt, self.outbox, self.health, device_id=self.cfg.device.id, version=__version__,
                         retained=lambda: self.discovery.messages(self.cfg) + self.fleet.messages(self.cfg, self.workers),
                         log=self.log)

    def _make_worker(self, sensor_cfg) -> SensorWorker:
        pipeline = SensorPipeline(
            device=self.cfg.device.id, sensor_cfg=sensor_cfg,
            aggregate_interval=self.cfg.aggregates.interval, emit=self._emit, log=self.log,
            model=self.models.initial(sensor_cfg) or self.fleet.prior_model(self.cfg, sensor_cfg),
            on_baseline=self._baseline_learned, clip=fleet_privacy.clip_bounds(self.cfg, sensor_cfg),
        )
        self.models.attach(sensor_cfg.name, pipeline)
        pipeline.sealer, pipeline.aggregator.privacy = self.models.sealer, privacy_setup.privatizer(self.cfg, self.log)
        if self.cfg.aggregates.features is not None:  # smaller rows for brokers with small limits
            pipeline.aggregator.features = tuple(self.cfg.aggregates.features)
        levels = self.levels.levels(sensor_cfg.name)
        pipeline.policy.restore(levels.get("anomaly", "clear"))
        # Same for the ISO zone check: a zone C/D raised before a restart is cleared after it.
        if pipeline.iso.cfg.enabled:
            pipeline.iso.level = {"warning": 2, "alarm": 3}.get(levels.get("iso10816", "clear"), 0)
        if pipeline.model.learns and pipeline.load_state(self.storage_dir):
            self.log.info("learned baseline restored", sensor=sensor_cfg.name, model=pipeline.model_name)
        # One offline rule for the alert and the status topic: the sensor's `health:` section.
        worker = SensorWorker(sensor_cfg, pipeline, self.log,
                              offline_after_s=pipeline.sensor_health.cfg.offline_after_s)
        worker.offline = levels.get("sensor_offline") == "alarm"  # so coming back emits `clear`
        return worker

    # -- the baseline lifecycle -------------------------------------------------------------
    def _baseline_learned(self, sensor: str, baseline: dict) -> None:
        """Learning ended (pipeline thread, worker lock held): the main loop saves the baseline
        at once, then republishes the status, so a status saying `ready` survives a kill -9."""
        self._save_due.add(sensor)
        self.request_wake()

    def _control(self, req: dict) -> dict:
        """Requests on the local control socket (agent/control.py, agent/baseline.py)."""
        from agent.baseline import handle_request

        reply = handle_request(req, self.workers, self.storage_dir)
        self.publisher and self.publisher.announce()  # status shows `learning` now, not in status_interval_s
        return reply

    def start(self) -> None:
        self.models.sealer = privacy_setup.sealer(self.cfg, self.storage_dir, self.log)  # exit 2 on a key problem
        try:
            os.makedirs(self.storage_dir, exist_ok=True)
        except OSError:
            pass  # unusable storage: the Store below says why and runs on a memory queue
        self.control = serve(socket_path(self.storage_dir), self._control, self.log)  # first: see its umask
        # Never raises: a damaged file is moved aside, an unusable dir gives a memory queue.
        self.outbox = Store(self.storage_dir, int(self.cfg.storage.max_outbox_mb * 2**20), self.log)
        self._dropped_logged = sum(self.outbox.dropped.values()) - sum(self.outbox.rejected.values())
        pending = self.outbox.depth()
        self.log.info("outbox open", path=self.outbox.path, **pending)
        try:
            self.publisher = self._make_publisher()
        except Exception as exc:  # e.g. a TLS file that is not there: the operator's to fix
            raise ConfigError([f"mqtt: settings unusable (check tls files and password_file): {exc}"]) from None
        self.publisher.start()
        for sensor_cfg in self.cfg.sensors:
            self._start_worker(sensor_cfg)
        # The first connect may come before the sensors exist (restored baselines, a fleet prior): the
        # status names them now, not status_interval_s later, and their fleet shares go with it.
        self.publisher.announce()
        self.notifier.ready(self.summary())
        self.log.info("agent running", version=__version__, device=self.cfg.device.id,
                      sensors=[s.name for s in self.cfg.sensors],
                      broker=f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}")

    def _start_worker(self, sensor_cfg) -> bool:
        """Build and start one sensor; a sensor that cannot be built is logged and skipped,
        so it never takes the agent or the other sensors down."""
        try:
            worker = self._make_worker(sensor_cfg)
        except Exception as exc:
            self.log.error("sensor cannot be built; it is not running", sensor=sensor_cfg.name, error=str(exc))
            return False
        self.workers[sensor_cfg.name] = worker
        worker.start()
        return True

    def _stop_worker(self, name: str) -> None:
        worker = self.workers.pop(name)
        self.models.detach(name)
        worker.stop()
        self._save(worker)

    def _save(self, worker: SensorWorker) -> None:
        # Not while the pipeline thread is mid-update; and a stuck stage must not hang a stop.
        if not worker.lock.acquire(timeout=5.0):
            self.log.warning("pipeline busy; learned baseline not saved this time", sensor=worker.cfg.name)
            return
        try:
            worker.pipeline.save_state(self.storage_dir)
        except Exception as exc:
            self.log.warning("could not save learned baseline", sensor=worker.cfg.name, error=str(exc))
        finally:
            worker.lock.release()

    # -- running -------------------------------------------------------------------------
    def run(self) -> int:
        self.start()
        last_save = time.monotonic()
        last_status = time.monotonic()
        tick = min(1.0, self.notifier.watchdog_interval or 1.0)
        try:
            while True:
                self._sleep(tick)
                if self._stop_requested:
                    break
                if self._reload_requested:
                    self._reload_requested = False
                    try:
                        self.reload()
                    except Exception as exc:  # a reload must never take the running agent down
                        self.log.exception("reload failed; keeping what runs")
                        self.last_reload = {"ts": iso_utc(time.time()), "result": "failed", "errors": [str(exc)]}
                        self.notifier.ready(self.summary())
                self.outbox.flush_unsaved()
                self.outbox.retry()
                self.models.poll()
                self.commands.poll() and self.publisher.announce()  # a command's result, published at once
                if self.healthy():
                    if self.notifier.watchdog_interval:
                        self.notifier.watchdog()
                summary = self.summary()
                if summary != self._status_text:  # `systemctl status` shows the current line
                    self._status_text = summary
                    self.notifier.status(summary)
                if self._save_due:  # a baseline just learned is saved at once, then announced
                    while self._save_due:
                        (worker := self.workers.get(self._save_due.pop())) and self._save(worker)
                    self.publisher.announce()
                    self._status_file_due = True
                if self._status_file_due or time.monotonic() - last_status >= self.cfg.mqtt.status_interval_s:
                    last_status, self._status_file_due = time.monotonic(), False
                    self._write_status("online")
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    last_save = time.monotonic()
                    for worker in list(self.workers.values()):
                        self._save(worker)
        finally:
            self.stop()
        return 0

    def healthy(self) -> bool:
        stalled = [f"{n}.{stage}" for n, w in self.workers.items() for stage in w.stalled(self.stall_s)]
        if self.publisher is not None and time.monotonic() - self.publisher.beat > self.stall_s:
            stalled.append("publisher")
        if stalled:
            self.log.error("stalled sensor workers; watchdog not fed", sensors=stalled)
            return False
        return True

    def stop(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping: sensors first, then the publisher; pending messages stay in the outbox")
        for name in list(self.workers):
            self._stop_worker(name)
        self.commands.stop()
        if self.publisher is not None:
            self.publisher.stop()
        if self.outbox is not None:
            self._write_status("offline")
            self.log.info("stopped", **self.outbox.depth())
            self.outbox.close()
        if self.control is not None:
            self.control.stop()

    def _write_status(self, state: str) -> None:
        """The status document on local disk too, for `pdm-agent status` without a broker."""
        doc = {"state": state, "version": __version__, "ts": iso_utc(time.time())}
        if state == "online":
            doc.update(self.health())
        if self.publisher is not None:
            doc.update(self.publisher.clash.status())  # as on the status topic (agent/identity.py)
        try:
            status_file.write(self.storage_dir, doc)
        except OSError as exc:
            self.log.warning("could not write the local status file", error=str(exc))

    def reload(self) -> None:
        """SIGHUP: agent/reload.py."""
        from agent.reload import reload

        reload(self)

    # -- health ----------------------------------------------------------------------------
    def health(self) -> dict:
        """The status document (agent/status.py) of this service, now."""
        doc = status.document(started=self.started, cpu=self.cpu, workers=self.workers, models=self.models,
                              levels=self.levels, outbox=self.outbox, config_path=self.config_path,
                              last_reload=self.last_reload, fleet=self.fleet)
        return {**doc, "commands": self.commands.status()}  # remote commands (agent/commands.py)

    def summary(self) -> str:
        n = len(self.workers)
        online = sum(1 for w in self.workers.values() if w.online)
        connected = self.publisher is not None and self.publisher.connected
        return f"{online}/{n} sensors online, broker {'connected' if connected else 'unreachable (buffering)'}"
