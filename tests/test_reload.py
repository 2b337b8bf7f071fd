"""SIGHUP reload rebuilds only what changed (issue 8): the service in-process, its workers real."""

from __future__ import annotations

import structlog

from agent.service import Service

BASE = """
device: {id: gw}
mqtt: {host: 127.0.0.1, port: 1, reconnect_min_s: 5, reconnect_max_s: 5}
storage: {dir: STATE}
sensors:
  - {name: pump1, protocol: sim, sample_rate: 3200, window: {size: 1024}}
  - {name: fan2, protocol: sim, sample_rate: 3200, window: {size: 1024}, alerts: {warning: 0.5}}
aggregates: {interval: 5}
"""


def test_reload_rebuilds_only_what_changed_and_refuses_invalid(tmp_path):
    path = tmp_path / "config.yaml"
    text = BASE.replace("STATE", str(tmp_path / "state"))
    path.write_text(text)
    service = Service(str(path), structlog.get_logger())
    service.start()
    try:
        pump, fan, publisher = service.workers["pump1"], service.workers["fan2"], service.publisher

        path.write_text(text.replace("warning: 0.5", "warning: 0.6"))  # one sensor's threshold
        service.reload()
        assert service.workers["pump1"] is pump, "an unchanged sensor must keep running untouched"
        assert service.workers["fan2"] is not fan and service.workers["fan2"].pipeline.policy.config.warning == 0.6
        assert service.publisher is publisher, "the broker connection is kept when mqtt did not change"

        path.write_text(text.replace("warning: 0.5", "warning: 0.6").replace("port: 1,", "port: 2,"))
        service.reload()
        assert service.publisher is not publisher and service.publisher.port == 2
        assert service.workers["pump1"] is pump

        before = dict(service.workers)
        path.write_text(text.replace("sample_rate: 3200, window", "sample_rate: fast, window"))
        service.reload()  # invalid: refused, everything keeps running
        assert service.workers == before and service.last_reload["result"] == "refused"
        assert any("sensors[0].sample_rate" in e for e in service.last_reload["errors"])
    finally:
        service.stop()
