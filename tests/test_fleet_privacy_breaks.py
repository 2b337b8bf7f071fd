"""`fleet.privacy` as a new user breaks it: a changed setting must not re-noise a released baseline,
an exact share must not linger once privacy is set, modbus sensors get bounds for their own values,
and altered shares or odd command-line values are refused in words (no traceback, nothing written)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from agent.config import ConfigError, parse_config
from agent.fleet_privacy import clip_bounds, private_detector, sensor_features
from agent.fleet_share import FleetShare, merge
from agent.pipeline import SensorPipeline, build_model
from models.pooling import PoolingError
from fleet_helpers import RecordingLog as Log

ROOT = Path(__file__).resolve().parent.parent
# Declared physical ranges (not taken from the data below), every feature of a 1000 Hz sim sensor.
BOUNDS = ('{"*.rms_g": [0.001, 10], "*.peak_g": [0.001, 50], "*.crest_factor": [1, 20], "*.kurtosis": [1, 50], '
          '"*.skewness": [-10, 10], "*.band_*_g2": [1.0e-9, 10], "*.velocity_rms_mm_s": [0.01, 50], '
          '"*.envelope_rms_g": [1.0e-5, 10], "temp.mean_c": [0, 120], "temp.slope_c_per_min": [-10, 10]}')




def config(device="gw-1", machine_type="pump-a", privacy: str | None = "{epsilon: 10, bounds: %s}" % BOUNDS):
    fleet = f"fleet: {{share_baseline: true, machine_type: {machine_type}"
    fleet += f", privacy: {privacy}}}\n" if privacy else "}\n"
    return parse_config(f"device: {{id: {device}}}\nsensors: [{{name: pump1, protocol: sim, sample_rate: 1000}}]\n"
                        + fleet, "c.yaml")


def learned_workers(cfg, seed=40):
    """One sim sensor whose model (made as the agent makes it, with fleet.privacy's clip) has learned
    a 100-window baseline of healthy-looking vectors."""
    s = cfg.sensors[0]
    pipe = SensorPipeline(device=cfg.device.id, sensor_cfg=s, aggregate_interval=60.0, emit=lambda r: None)
    pipe.model = build_model(s.detector.model_copy(update={"learn_seconds": 100.0}), s.alerts, clip_bounds(cfg, s))
    names, rng = sensor_features(s), np.random.default_rng(seed)
    for i in range(110):
        x = dict(zip(names, rng.lognormal(0, 0.1, len(names)).tolist()))
        x.update({k: v for k, v in {"temp.mean_c": 40 + rng.normal(), "temp.slope_c_per_min": 0.1 * rng.normal()}.items()
                  if k in x})
        pipe.model.update(x, ts=1.8e9 + i)
    return {"pump1": SimpleNamespace(pipeline=pipe, lock=threading.Lock(), cfg=s)}


def test_a_changed_epsilon_republishes_the_kept_share_and_never_draws_new_noise(tmp_path):
    cfg = config()
    workers = learned_workers(cfg)
    (topic, first), = FleetShare(Log(), "t", str(tmp_path)).messages(cfg, workers)
    released = json.loads(first)
    assert released["privacy"]["epsilon"] == 10 and released["detector"]["n"] == 100
    # A restart after epsilon was lowered: the same baseline, so the share released before, as it was.
    lower = config(privacy="{epsilon: 1, bounds: %s}" % BOUNDS)
    log = Log()
    fleet = FleetShare(log, "t", str(tmp_path))
    (again_topic, again), = fleet.messages(lower, workers)
    assert again_topic == topic and json.loads(again) == released
    assert any(e.startswith("fleet.privacy changed") for e, _ in log.lines)
    assert fleet.status("pump1")["fleet"]["shared"]["privacy"]["epsilon"] == 10
    # privacy removed: still this baseline's released share, never its exact statistics
    (_, plain), = FleetShare(Log(), "t", str(tmp_path)).messages(config(privacy=None), workers)
    assert json.loads(plain) == released
    # A new device.id relabels the same share (same noise) and clears the old topic.
    moved = fleet.messages(config(device="gw-2"), workers)
    assert (topic, b"") in moved
    (new_topic, relabelled), = [m for m in moved if m[1]]
    doc = json.loads(relabelled)
    assert new_topic.endswith("/gw-2/pump1") and doc["device"] == "gw-2"
    assert doc["detector"] == released["detector"] and doc["privacy"] == released["privacy"]


def test_a_share_that_could_not_be_kept_on_disk_is_not_noised_again_by_a_reload():
    cfg = config()
    workers = learned_workers(cfg)
    log = Log()
    fleet = FleetShare(log, "t", "/nonexistent/state")  # the kept file cannot be written
    (_, first), = fleet.messages(cfg, workers)
    assert any(e.startswith("private share not kept") for e, _ in log.lines)
    (_, after), = fleet.messages(config(privacy="{epsilon: 1, bounds: %s}" % BOUNDS), workers)  # a reload
    assert json.loads(after) == json.loads(first)


def test_an_exact_share_is_cleared_from_the_broker_once_privacy_is_set(tmp_path):
    exact = config(privacy=None)
    workers = learned_workers(exact)  # learned without clipped sums
    log = Log()
    fleet = FleetShare(log, "t", str(tmp_path))
    (topic, payload), = fleet.messages(exact, workers)
    assert json.loads(payload)["privacy"] is None
    assert fleet.messages(config(), workers) == [(topic, b"")]  # the reload's announce: an empty retained message
    entry = fleet.status("pump1")["fleet"]
    assert "shared" not in entry and "learned without fleet.privacy" in entry["not_shared"]["reason"]
    assert log.lines[-1][1].get("retained_share") == "cleared from the broker"


MODBUS = ("device: {id: gw-m}\nsensors: [{name: pump1, protocol: modbus, port: /dev/null, preset: qm30vt2}]\n"
          "fleet: {share_baseline: true, machine_type: pump-m, privacy: {epsilon: 10, bounds: %s}}\n")
REGISTER_BOUNDS = ('{"*.velocity_rms_mm_s": [0.01, 50], "*.velocity_peak_mm_s": [0.01, 100], '
                   '"*.velocity_peak_freq_hz": [1, 5000], "*.rms_g": [0.001, 10], "*.hf_rms_g": [1.0e-4, 10], '
                   '"*.peak_g": [0.001, 50], "*.kurtosis": [1, 50], "*.crest_factor": [1, 20], "temp.mean_c": [-40, 105]}')


def test_a_modbus_sensor_needs_and_gets_bounds_for_its_register_values():
    cfg = parse_config(MODBUS % REGISTER_BOUNDS, "c.yaml")  # no bounds for waveform features it never computes
    s = cfg.sensors[0]
    names = sensor_features(s)
    assert "z.velocity_rms_mm_s" in names and "ax.rms_g" not in names
    clip = clip_bounds(cfg, s)
    assert sorted(clip) == sorted(names)
    model = build_model(s.detector.model_copy(update={"learn_seconds": 30.0}), s.alerts, clip)
    rng = np.random.default_rng(3)
    for i in range(40):
        model.update({n: (35.0 if n == "temp.mean_c" else 1.0) * float(rng.lognormal(0, 0.05)) for n in names},
                     ts=1.8e9 + i)
    shared, block = private_detector(model.state()["reference"], cfg.fleet.privacy, "sensor pump1")
    assert sorted(shared["keys"]) == sorted(names) and shared["n"] == 30 and block["epsilon"] == 10
    less = json.loads(REGISTER_BOUNDS)
    less.pop("*.hf_rms_g")
    with pytest.raises(ConfigError) as exc:
        parse_config(MODBUS % json.dumps(less), "c.yaml")
    assert "z.hf_rms_g" in exc.value.errors[0] and "ax." not in exc.value.errors[0]


def test_a_modbus_sensor_starts_from_a_prior_of_modbus_private_shares(tmp_path):
    from agent.fleet_cli import write_prior
    from models import bundle

    key, pub = bundle.keygen(str(tmp_path / "fleet"))
    shares = []
    for seed in (1, 2):
        cfg = parse_config((MODBUS % REGISTER_BOUNDS).replace("gw-m", f"gw-{seed}"), "c.yaml")
        (_, payload), = FleetShare(Log(), "t").messages(cfg, learned_workers(cfg, seed))
        shares.append((f"s{seed}", json.loads(payload)))
    path = write_prior(merge(shares), str(tmp_path / "prior"))
    bundle.sign(path, key)
    cfg = parse_config(MODBUS.split("fleet:")[0] + f"models: {{trusted_keys: [{pub}]}}\n"
                       f"fleet: {{prior: {path}, machine_type: pump-m}}\n", "c.yaml")
    fleet = FleetShare(Log(), "t")
    assert fleet.prior_model(cfg, cfg.sensors[0]) is not None, fleet.status("pump1")
    assert fleet.status("pump1")["fleet"]["prior"]["machines"] == 2


def private_shares(tmp_path) -> list[Path]:
    files = []
    for seed in (1, 2):
        cfg = config(device=f"gw-{seed}")
        (_, payload), = FleetShare(Log(), "t", str(tmp_path / f"s{seed}")).messages(cfg, learned_workers(cfg, seed))
        files.append(tmp_path / f"share{seed}.json")
        files[-1].write_bytes(payload)
    return files


@pytest.mark.parametrize("key, value", [("scale", None), ("scale", -1.0), ("scale", 0), ("scale", "abc"),
                                        ("epsilon", "x"), ("delta", None), ("sensitivity", {"sum": 1.0})])
def test_an_altered_privacy_block_is_refused_naming_the_share_and_key(tmp_path, key, value):
    good, bad = private_shares(tmp_path)
    doc = json.loads(bad.read_text())
    if value is None:
        doc["privacy"].pop(key)
    else:
        doc["privacy"][key] = value
    bad.write_text(json.dumps(doc))
    with pytest.raises(PoolingError, match=f"{bad}: privacy.{key}"):
        merge([(str(good), json.loads(good.read_text())), (str(bad), doc)])
    out = tmp_path / "prior"
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", str(good), str(bad), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and f"privacy.{key}" in run.stderr and "Traceback" not in run.stderr + run.stdout
    assert not out.exists()


@pytest.mark.parametrize("ratio", ["1.0", "-1", "nan", "inf"])
def test_a_tail_ratio_that_cannot_be_a_tail_is_refused_before_anything_is_written(tmp_path, ratio):
    files = private_shares(tmp_path)
    out = tmp_path / "prior"
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", *map(str, files), "--out", str(out),
                          "--tail-ratio", ratio], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "--tail-ratio must be a finite number above 1.02" in run.stderr
    assert not out.exists() and "Traceback" not in run.stderr


def test_fleet_bounds_refuses_a_k_that_gives_unusable_bounds(tmp_path):
    cfg = config(privacy=None)
    (_, payload), = FleetShare(Log(), "t").messages(cfg, learned_workers(cfg))
    ref = tmp_path / "ref.json"
    ref.write_bytes(payload)
    for k, words in (("inf", "--k must be a finite number above 0"), ("1e300", "--k 1e+300 is too large"),
                     ("1e-6", "gives bounds fleet.privacy cannot use")):
        run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "bounds", str(ref), "--k", k],
                             cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 2 and words in run.stderr and "Traceback" not in run.stderr, (k, run.stderr)
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "bounds", str(ref)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0
    lows = [float(line.split("[")[1].split(",")[0]) for line in run.stdout.splitlines() if line.startswith("  ")]
    assert len(lows) == 29 and all(math.isfinite(v) for v in lows)


def test_config_check_warns_of_bounds_that_never_apply():
    from agent.config_warnings import config_warnings

    bounds = '{"*": [0.001, 100], "*.skewness": [-10, 10], "temp.mean_C": [0, 120], "temp.slope_c_per_min": [-10, 10]}'
    text = ("device: {id: gw-1}\nsensors: [{name: pump1, protocol: sim, sample_rate: 1000}]\n"
            f"fleet: {{share_baseline: true, machine_type: pump-a, privacy: {{epsilon: 10, bounds: {bounds}}}}}\n")
    warned = [w for w in config_warnings(parse_config(text, "c.yaml"), text, "c.yaml") if "fleet.privacy" in w]
    assert len(warned) == 2, warned  # "*" catches the rest; the exact temp.slope_c_per_min applies
    assert warned[0].startswith("fleet.privacy.bounds.*.skewness: never applies: ax.skewness")
    assert warned[1].startswith("fleet.privacy.bounds.temp.mean_C: matches no feature")
    assert not any("fleet.privacy" in w for w in config_warnings(config(), "", "c.yaml"))  # every entry used


def test_a_kept_share_edited_by_hand_is_noised_again_with_a_warning_not_a_crash(tmp_path):
    cfg = config()
    workers = learned_workers(cfg)
    FleetShare(Log(), "t", str(tmp_path)).messages(cfg, workers)
    kept = tmp_path / "fleet-share-pump1.json"
    doc = json.loads(kept.read_text())
    doc["payload"] = {"kind": "fleet-baseline"}
    kept.write_text(json.dumps(doc))
    log = Log()
    (_, payload), = FleetShare(log, "t", str(tmp_path)).messages(cfg, workers)
    assert json.loads(payload)["privacy"]["epsilon"] == 10
    assert any(e.startswith("kept private share unreadable") and "kept share of pump1" in kw["reason"] for e, kw in log.lines)
    assert json.loads(kept.read_text())["payload"] == json.loads(payload)  # the new release is kept
