"""The baseline lifecycle in the agent: what may be learned, status, reset, control socket, config check."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest

from agent.baseline import SENSIBLE_WINDOWS, planned_windows
from agent.cli import main
from agent.config_models import SensorConfig, parse_sensor
from agent.control import ControlServer, ControlUnavailable, request
from agent.pipeline import SensorPipeline
from agent.records import Frame
from drivers.simulator import Machine

CHANNELS = ("ax", "ay", "az", "temp")
T0 = 1_800_000_000.0


class Log:
    def __init__(self):
        self.lines = []

    def _add(self, level, event, **kw):
        self.lines.append((level, event, kw))

    def debug(self, event, **kw):
        self._add("debug", event, **kw)

    def info(self, event, **kw):
        self._add("info", event, **kw)

    def warning(self, event, **kw):
        self._add("warning", event, **kw)

    error = warning

    def exception(self, event, **kw):
        self._add("error", event, **kw)


def contract_sensor(learn_seconds: float, **extra) -> SensorConfig:
    """Contract keys only: 1000 Hz, default 4096-sample windows (one per 4.096 s)."""
    return parse_sensor(name="pump1", protocol="sim", sample_rate=1000, channels=list(CHANNELS),
                        detector={"learn_seconds": learn_seconds}, **extra)


def run(pipeline: SensorPipeline, seconds: int, *, seed: int = 1, fault=None, fault_at=0.0, start: int = 0,
        reject_at: set | None = None) -> None:
    machine = Machine(rate=1000.0, seed=seed, fault=fault, fault_at=fault_at)
    if start:
        machine.generate(1000 * start)
    for k in range(start, start + seconds):
        samples = machine.generate(1000)
        rejected = 0
        if reject_at and k in reject_at:  # what agent/plausibility.py passes on after dropping samples
            samples, rejected = samples[10:], 10
        pipeline.process(Frame("pump1", T0 + k + 1, CHANNELS, samples, rejected))


def make(cfg, log=None):
    alerts, learned = [], []
    p = SensorPipeline(device="gw", sensor_cfg=cfg, aggregate_interval=1e12, emit=alerts.append, log=log,
                       on_baseline=lambda s, b: learned.append((s, b)))
    return p, alerts, learned


def test_end_of_learning_is_one_log_line_and_one_callback() -> None:
    log = Log()
    p, alerts, learned = make(contract_sensor(20), log)
    run(p, 60)
    assert len(learned) == 1 and learned[0][0] == "pump1" and learned[0][1]["state"] == "ready"
    lines = [kw for _, event, kw in log.lines if event == "baseline learned"]
    assert len(lines) == 1 and lines[0]["windows"] == 5 and lines[0]["learned_at"]
    b = p.baseline()
    assert set(b) >= {"state", "progress", "windows", "learned_at", "reason"} and b["windows"] == 5


def test_windows_with_implausible_samples_are_not_learned() -> None:
    p, _, _ = make(contract_sensor(60))
    run(p, 70, reject_at={30})
    b = p.baseline()
    # the block of seconds 30..31 lies in window 7 (28.7-32.8 s); the gap before it touches nothing else
    assert b["excluded"] == {"implausible": 1} and b["windows"] == 14 and b["state"] == "ready"


def test_iso_zone_c_d_windows_are_never_learned_and_the_baseline_is_suspect() -> None:
    p, alerts, _ = make(contract_sensor(120))
    run(p, 130, fault="imbalance", fault_at=60)  # 1x vibration x6: ISO 10816-3 zone D
    b = p.baseline()
    assert b["state"] == "suspect" and "ISO 10816" in b["reason"] and b["excluded"]["iso10816"] > 5
    assert b["windows"] <= 15  # windows from 60 s on were not learned
    assert any(a.kind == "iso10816" and a.level == "alarm" for a in alerts)


def test_reset_forgets_the_baseline_and_learns_anew() -> None:
    log = Log()
    p, _, learned = make(contract_sensor(20), log)
    run(p, 40)
    first = p.baseline()["learned_at"]
    assert p.reset_baseline()
    b = p.baseline()
    assert b["state"] == "learning" and b["windows"] == 0 and b["progress"] == 0.0 and b["learned_at"] is None
    run(p, 40, start=40)
    assert p.baseline()["state"] == "ready" and p.baseline()["learned_at"] > first and len(learned) == 2


def test_soak_short_baseline_false_alerts_per_hour() -> None:
    p, alerts, _ = make(contract_sensor(40))  # 10 windows
    run(p, 3600 + 45, seed=7)
    raised = [a for a in alerts if a.kind == "anomaly" and a.level != "clear"]
    print(f"\n10-window baseline, 1 h healthy: {len(raised)} anomaly alert(s)")
    assert p.baseline()["windows"] == 10 and len(raised) <= 1


def test_planned_windows_and_config_check_output(tmp_path, capsys) -> None:
    assert planned_windows(contract_sensor(20)) == (5, 4.096)
    assert planned_windows(contract_sensor(3600))[0] == 879
    cfg = tmp_path / "c.yaml"
    cfg.write_text("device: {id: gw}\nsensors:\n  - name: pump1\n    port: /dev/ttyUSB0\n    sample_rate: 1000\n"
                   "    detector:\n      learn_seconds: 20\n  - name: fan2\n    protocol: sim\n")
    assert main(["config", "check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "pump1: baseline of 5 windows" in out and "fan2: baseline of 879 windows" in out
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "sensors[0].detector.learn_seconds" in warning[0]
    assert f"fewer than {SENSIBLE_WINDOWS}" in warning[0] and warning[0].endswith(f"({cfg}:7)")


def test_control_socket_round_trip_mode_and_stale_socket(tmp_path) -> None:
    path = str(tmp_path / "control.sock")
    open(path, "w").close()  # a stale file where the socket goes (an agent killed with -9)
    seen = []
    server = ControlServer(path, lambda req: seen.append(req) or {"ok": True, "sensors": ["pump1"]}, Log())
    server.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        reply = request(path, {"command": "baseline-reset", "sensor": "pump1"})
        assert reply == {"ok": True, "sensors": ["pump1"]}
        assert seen == [{"command": "baseline-reset", "sensor": "pump1"}]
        with pytest.raises(OSError, match="another agent"):
            ControlServer(path, lambda req: {}, Log()).start()
    finally:
        server.stop()
    assert not os.path.exists(path)
    with pytest.raises(ControlUnavailable):
        request(path, {"command": "ping"})


def test_control_handler_failure_is_a_reply_not_a_dead_channel(tmp_path) -> None:
    path = str(tmp_path / "control.sock")

    def boom(req):
        raise RuntimeError("broken")

    server = ControlServer(path, boom, Log())
    server.start()
    try:
        assert request(path, {"command": "x"}) == {"ok": False, "error": "broken"}
        assert request(path, {"command": "ping"}) == {"ok": True}
    finally:
        server.stop()


def test_baseline_reset_cli_without_agent_exits_1_and_unknown_sensor_2(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"device: {{id: gw}}\nstorage: {{dir: {tmp_path / 'state'}}}\nsensors:\n  - name: pump1\n"
                   "    protocol: sim\n")
    assert main(["baseline", "reset", "--config", str(cfg)]) == 1
    assert "no running agent" in capsys.readouterr().err
    assert main(["baseline", "reset", "--config", str(cfg), "--sensor", "nope"]) == 2
    assert "not a sensor" in capsys.readouterr().err
