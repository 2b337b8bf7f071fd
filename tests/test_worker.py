"""The sensor worker's bounded queue and stage heartbeats, with the simulated machine as source."""

from __future__ import annotations

import threading
import time

import structlog

from agent.config import parse_config

CONFIG = """
device: {id: t}
storage: {dir: /tmp/unused}
sensors:
  - name: pump1
    protocol: sim
    sample_rate: 3200
    window: {size: 1024}
"""


class SlowPipeline:
    """Stands in for the pipeline stage only: blocks while `gate` is closed."""

    device = "t"
    model_name = "test@1"

    def __init__(self):
        self.gate = threading.Event()
        self.samples = 0
        self.emitted = []

    def process(self, frame):
        self.gate.wait()
        self.samples += len(frame.samples)

    def tick(self, now):
        pass

    def emit(self, record):
        self.emitted.append(record)


def make_worker(queue_seconds=1.0):
    from agent.worker import SensorWorker

    cfg = parse_config(CONFIG).sensors[0]
    pipeline = SlowPipeline()
    return SensorWorker(cfg, pipeline, structlog.get_logger(), queue_seconds=queue_seconds), pipeline


def test_stuck_pipeline_is_reported_stalled_and_the_queue_stays_bounded():
    worker, pipeline = make_worker(queue_seconds=1.0)
    worker.start()
    try:
        time.sleep(2.5)  # the machine produces 3200 samples/s; the pipeline is stuck
        assert worker.stalled(1.0) == ["processor"]  # the reader keeps beating, the model does not
        assert worker.counters()["queued_samples"] <= 3200 + 3200 * 0.2  # 1 s bound (+ one block)
        assert worker.dropped_samples > 0
        pipeline.gate.set()
        time.sleep(1.0)
        assert worker.stalled(1.0) == []
        assert pipeline.samples > 0
    finally:
        pipeline.gate.set()
        worker.stop()
