"""One sensor's two stages, each on its own thread, joined by a bounded queue.

    source.read() --reader--> [frames, at most `queue_seconds` of samples] --processor--> pipeline

Splitting the serial read from the pipeline keeps the port drained even while a model is
slow, and makes each stage's liveness visible: both threads stamp a heartbeat on every
loop, and the service feeds the systemd watchdog only while all heartbeats are fresh.

When the pipeline cannot keep up, the oldest frames are dropped (new data matters more than
old for condition monitoring), counted, and reported in a rate-limited log line, so memory
stays flat under a flood. A sensor that delivers nothing for `offline_after_s` (a lost port
included) raises an alert of its own kind (`sensor_offline`, `threshold` = that many seconds)
and a `clear` when data comes back; the other sensors never notice.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from agent.logs import Every
from agent.plausibility import PhysicalRange
from agent.records import Alert
from drivers.base import VALUES


def _size(item, values: bool) -> int:
    """Samples in a queued item; a FeatureVector (a VALUES source's poll) counts as one."""
    return 1 if values else len(item.samples)


class SensorWorker:
    """One sensor's two threads: the reader drains its source into a bounded queue (at most
    `queue_seconds` of samples; the oldest are dropped and counted), the processor feeds the
    pipeline from it. Heartbeats per stage feed the watchdog; no data for `offline_after_s`
    raises a sensor_offline alert."""

    def __init__(self, cfg, pipeline, log, *, queue_seconds: float = 10.0, offline_after_s: float = 10.0) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.log = log
        self.source = None
        self._values = False  # the source's kind is VALUES (set once it is open)
        self.error: str | None = None
        self.offline_after_s = offline_after_s  # no data this long (or a lost port) = offline
        rate = float(cfg.sample_rate)
        self._max_queued = max(1, int(queue_seconds * rate))  # samples
        self._queue: deque = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self.dropped_samples = 0
        self.range = PhysicalRange(cfg.channels, cfg.temperature_channels)
        self.offline = False
        self._last_data = time.monotonic()
        self._warn_flood = Every(10.0)
        self._warn_input = Every(10.0)
        self._input_errors = 0
        now = time.monotonic()
        self.beats = {"reader": now, "processor": now}
        self.lock = threading.Lock()  # held while the pipeline runs; checkpoints take it too
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read_loop, name=f"{cfg.name}-reader", daemon=True),
            threading.Thread(target=self._process_loop, name=f"{cfg.name}-pipeline", daemon=True),
        ]

    def start(self) -> None:
        from drivers.base import open_source

        try:
            self.source = open_source(self.cfg, log=self.log)
            self._values = self.source.kind == VALUES  # the front end is picked once, from the source
        except Exception as exc:  # e.g. a protocol this build does not have: this sensor only
            self.error = str(exc)
            self.log.error("sensor cannot start", sensor=self.cfg.name, error=self.error)
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        if self.source is not None:
            self.source.close()

    @property
    def online(self) -> bool:
        return self.source is not None and not self.offline

    def stalled(self, limit_s: float) -> list[str]:
        now = time.monotonic()
        return [stage for stage, beat in self.beats.items() if now - beat > limit_s]

    def counters(self) -> dict:
        out = dict(self.source.counters()) if self.source is not None else {}
        out.update(queued_samples=self._queued, dropped_samples=self.dropped_samples,
                   out_of_range_samples=self.range.dropped)
        return out

    # -- reader: drain the port as fast as it delivers ------------------------------------
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            self.beats["reader"] = time.monotonic()
            if self.source is None:
                self._stop.wait(1.0)
                continue
            try:
                frame = self.source.read()
            except Exception as exc:  # a driver bug must not kill the thread
                self.error = repr(exc)
                self.log.exception("sensor read error", sensor=self.cfg.name)
                self._stop.wait(1.0)
                continue
            self._report_input_errors()
            if frame is None:
                continue
            if self._values:  # a poll: values, not samples to range-check
                self._enqueue(frame)
                continue
            frame = self.range.filter(frame)
            if frame is None:
                continue
            self._enqueue(frame)

    def _enqueue(self, frame) -> None:
        with self._cond:
            self._queue.append(frame)
            self._queued += _size(frame, self._values)
            dropped = 0
            while self._queued > self._max_queued and len(self._queue) > 1:
                old = self._queue.popleft()
                self._queued -= _size(old, self._values)
                dropped += _size(old, self._values)
            self._cond.notify()
        if dropped:
            self.dropped_samples += dropped
            if self._warn_flood.ready():
                self.log.warning("sensor delivers faster than the pipeline; oldest samples dropped",
                                 sensor=self.cfg.name, dropped_samples=self.dropped_samples)

    def _report_input_errors(self) -> None:
        errors = self.source.input_errors()
        total = sum(v for v in errors.values() if isinstance(v, int)) + self.range.dropped
        if total > self._input_errors and self._warn_input.ready():
            self._input_errors = total
            self.log.warning("invalid input from sensor dropped (never shown to the model)",
                             sensor=self.cfg.name, out_of_range_samples=self.range.dropped, **errors)

    # -- processor: everything after the driver --------------------------------------------
    def _process_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self.beats["processor"] = time.monotonic()
            with self._cond:
                if not self._queue:
                    self._cond.wait(0.5)
                frames = list(self._queue)
                self._queue.clear()
                self._queued = 0
            try:
                for frame in frames:
                    with self.lock:
                        self.pipeline.process(frame)
                    self.beats["processor"] = time.monotonic()
                if frames:
                    self._last_data = time.monotonic()
                self._check_offline()
                self.pipeline.tick(time.time())
                failures = 0
            except Exception as exc:
                failures += 1
                self.error = repr(exc)
                if failures <= 3 or failures % 100 == 0:
                    self.log.exception("sensor pipeline error", sensor=self.cfg.name, failures=failures)
                self._stop.wait(min(5.0, 0.1 * failures))

    def _check_offline(self) -> None:
        if self.source is None:
            return
        # One rule, the one the alert states: no data for `offline_after_s` (its `threshold`).
        # A lost port counts from the last data it delivered, so a USB adapter that is
        # re-plugged within that time raises nothing; the status shows the port state at once.
        silent = time.monotonic() - self._last_data
        offline = silent > self.offline_after_s
        if offline == self.offline:
            return
        self.offline = offline
        level = "alarm" if offline else "clear"
        if offline:
            self.log.error("sensor offline", sensor=self.cfg.name, silent_s=round(silent, 1),
                           threshold_s=self.offline_after_s, port=str(self.cfg.port),
                           port_open=bool(self.source.online))
        else:
            self.log.info("sensor back online", sensor=self.cfg.name)
        self.pipeline.emit(Alert(
            ts=time.time(), device=self.pipeline.device, sensor=self.cfg.name, level=level,
            score=1.0 if offline else 0.0, threshold=self.offline_after_s, model=self.pipeline.model_name,
            reason=(("seconds_without_data", round(silent, 1), 1.0),), kind="sensor_offline",
        ))
