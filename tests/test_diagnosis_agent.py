"""Diagnosis in the agent: the simulator's faults are named, an anomaly alert carries its
diagnosis (and the status keeps the latest), and `pdm-agent replay` writes the `diagnosis` column
for raw waveform CSVs and burst directories (the machine from --config's first sensor)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from agent.config import SensorConfig, parse_sensor
from agent.pipeline import SensorPipeline
from agent.records import Frame
from drivers.simulator import Machine
from models.diagnosis import MachineConfig, diagnose

SKF6205 = {"name": "de", "bpfo": 3.585, "bpfi": 5.415, "bsf": 2.357, "ftf": 0.398}
RATE = 3200.0
CH = ("ax", "ay", "az")


@pytest.mark.parametrize("fault, named", [("outer-race", "outer_race"), ("inner-race", "inner_race"),
                                          ("ball", "ball"), ("imbalance", "imbalance"),
                                          ("misalignment", "misalignment"), (None, "unknown")])
def test_simulator_faults_are_named(fault, named):
    sim = Machine(rate=RATE, rpm=1780.0, seed=11, fault=fault, fault_at=0.0, channels=CH)
    sim.generate(int(6 * RATE))  # past the 5 s ramp: full severity
    m = MachineConfig(rpm=1780.0, bearings=[SKF6205], axial_channel="az")
    faults = Counter(diagnose(sim.generate(4096), RATE, m, CH).fault for _ in range(6))
    assert faults[named] >= 5, faults
    if fault is not None:
        assert faults["unknown"] + faults[named] == 6  # never a different fault


def sensor(**extra) -> SensorConfig:
    return parse_sensor({
        "name": "pump1", "protocol": "sim", "sample_rate": RATE, "channels": ["ax", "ay", "az", "temp"],
        "detector": {"learn_seconds": 20}, **extra})


def run(cfg: SensorConfig, fault: str | None, seconds: float = 45.0, fault_at: float = 25.0):
    """Feed the simulator through the pipeline in 0.25 s frames; the alerts it emitted."""
    sim = Machine(rate=RATE, rpm=1780.0, seed=4, fault=fault, fault_at=fault_at)
    emitted = []
    pipe = SensorPipeline(device="gw", sensor_cfg=cfg, aggregate_interval=1e9, emit=emitted.append)
    step = int(RATE / 4)
    for k in range(int(seconds * 4)):
        pipe.process(Frame("pump1", 1e9 + (k + 1) * 0.25, tuple(cfg.channels), sim.generate(step)))
    return pipe, [a for a in emitted if getattr(a, "kind", None) == "anomaly"]


def test_anomaly_alert_carries_the_diagnosis_and_status_keeps_it():
    pipe, alerts = run(sensor(machine={"rpm": 1780, "bearings": [SKF6205]}), "outer-race")
    raised = [a for a in alerts if a.level in ("warning", "alarm")]
    assert raised, "the outer-race fault raised no anomaly alert"
    d = raised[0].payload()["diagnosis"]
    assert (d["fault"], d["component"]) == ("outer_race", "de") and 0.5 <= d["confidence"] <= 1
    assert d["evidence"]["expected_hz"] == pytest.approx(3.585 * 1780 / 60, rel=0.02)
    assert all(line["ratio_to_floor"] > 1 for line in d["evidence"]["lines"])
    status = pipe.diagnosis.status()["diagnosis"]
    assert status["fault"] == "outer_race" and status["ts"].endswith("Z")


def test_without_machine_alerts_have_no_diagnosis():
    pipe, alerts = run(sensor(), "outer-race")
    assert any(a.level in ("warning", "alarm") for a in alerts)
    assert all("diagnosis" not in a.payload() for a in alerts) and pipe.diagnosis.status() == {}


def test_a_failing_diagnosis_never_holds_back_the_alert():
    """A 128-sample window is a valid setting but too short to diagnose: the alert goes out
    without a diagnosis, and the failure is logged."""
    logged = []

    class Log:
        def warning(self, msg, **kw):
            logged.append((msg, kw))

        info = debug = warning

    cfg = sensor(machine={"rpm": 1780, "bearings": [SKF6205]}, window={"size": 128})
    emitted = []
    pipe = SensorPipeline(device="gw", sensor_cfg=cfg, aggregate_interval=1e9, emit=emitted.append, log=Log())
    sim = Machine(rate=RATE, rpm=1780.0, seed=4, fault="imbalance", fault_at=25.0)
    for k in range(45 * 4):
        pipe.process(Frame("pump1", 1e9 + (k + 1) * 0.25, tuple(cfg.channels), sim.generate(800)))
    raised = [a for a in emitted if getattr(a, "kind", None) == "anomaly" and a.level != "clear"]
    assert raised and all("diagnosis" not in a.payload() for a in raised)
    assert any(msg.startswith("diagnosis failed") and "window must be" in kw["error"] for msg, kw in logged)


def config_file(tmp_path, learn: float) -> str:
    p = tmp_path / "config.yaml"
    p.write_text(f"""device: {{id: t}}
sensors:
  - name: pump1
    protocol: sim
    sample_rate: {RATE:g}
    channels: [ax, ay, az]
    detector: {{learn_seconds: {learn}}}
    machine:
      rpm: 1780
      bearings: [{{name: de, bpfo: 3.585, bpfi: 5.415, bsf: 2.357, ftf: 0.398}}]
""")
    return str(p)


def replay_cli(*args) -> list[dict]:
    out = args[args.index("--out") + 1]
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "replay", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return list(csv.DictReader(f))


def test_replay_waveform_csv_writes_the_diagnosis_column(tmp_path):
    sim = Machine(rate=RATE, rpm=1780.0, seed=2, fault="outer-race", fault_at=40.0, channels=CH)
    wave = tmp_path / "wave.csv"
    with open(wave, "w") as f:
        f.write("ax,ay,az\n")
        np.savetxt(f, sim.generate(int(70 * RATE)), delimiter=",", fmt="%.5f")
    rows = replay_cli(wave, "--out", tmp_path / "out.csv", "--config", config_file(tmp_path, 25))
    assert list(rows[0])[-1] == "diagnosis"
    in_alert = [r["diagnosis"] for r in rows if r["alert"] == "1"]
    assert in_alert and all(r["diagnosis"] == "" for r in rows if r["alert"] == "0")
    assert Counter(in_alert)["outer_race"] >= 0.8 * len(in_alert), Counter(in_alert)


def test_replay_bursts_take_the_machine_from_config(tmp_path):
    """One 4096-sample burst a minute; from burst 30 on an inner-race fault."""
    d = tmp_path / "bursts"
    d.mkdir()
    healthy = Machine(rate=RATE, rpm=1780.0, seed=8, channels=CH)
    faulty = Machine(rate=RATE, rpm=1780.0, seed=8, fault="inner-race", fault_at=0.0, channels=CH)
    faulty.generate(int(6 * RATE))
    for k in range(40):
        x = (healthy if k < 30 else faulty).generate(4096)
        np.savetxt(d / f"2024-05-01T10:{k:02d}:00.txt", x, fmt="%.5f")
    rows = replay_cli(d, "--out", tmp_path / "out.csv", "--config", config_file(tmp_path, 3600),
                      "--columns", "ax,ay,az", "--train-rows", 25)
    assert all(r["diagnosis"] == "" for r in rows[:30])
    in_alert = [r["diagnosis"] for r in rows[30:] if r["alert"] == "1"]
    assert len(in_alert) >= 5 and Counter(in_alert)["inner_race"] >= 0.8 * len(in_alert), in_alert


def test_status_and_watch_text_show_the_diagnosis():
    from agent.alert_text import describe_alert
    from agent.status_cmd import render

    pipe, alerts = run(sensor(machine={"rpm": 1780, "bearings": [SKF6205]}), "outer-race")
    alert = next(a for a in alerts if a.level in ("warning", "alarm")).payload()
    assert "; diagnosis: outer_race on de (confidence " in describe_alert(alert)
    doc = {"state": "online", "sensors": {"pump1": {"condition": "alarm", "last_alert": alert, **pipe.diagnosis.status()}}}
    text = render(doc, "broker", "gw")
    assert "latest diagnosis (" in text and "outer_race on de" in text
