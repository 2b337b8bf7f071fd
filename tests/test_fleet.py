"""Federated baselines: exact pooling, what a share holds, the signed prior and its refusals."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.config import ConfigError, parse_config
from agent.fleet_cli import write_prior
from agent.fleet_share import SHARE_KEYS, FleetShare, load_prior, merge, share_payload
from models import bundle, registry
from models.gaussian import GaussianDetector
from models.pooling import PoolingError, detector_state, pool, stats_of
from models.prior import prior_model
from models.streaming import StreamingModel
from fleet_helpers import RecordingLog as Log, numbers as _numbers

ROOT = Path(__file__).resolve().parent.parent
FEATURES = ["ax.rms_g", "ax.kurtosis", "ax.band_1_2k_g2", "ax.skewness", "temp.mean_c"]


def vectors(seed: int, n: int, shift: float = 0.0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, len(FEATURES)))
    mixed = base @ (np.eye(len(FEATURES)) + 0.3 * rng.normal(size=(len(FEATURES), len(FEATURES))))
    out = []
    for row in mixed:
        out.append({"ax.rms_g": math.exp(0.1 * row[0] + shift), "ax.kurtosis": math.exp(1.1 + 0.05 * row[1]),
                    "ax.band_1_2k_g2": math.exp(-3 + 0.2 * row[2] + shift), "ax.skewness": 0.1 * row[3],
                    "temp.mean_c": 40 + 10 * shift + row[4]})
    return out


def learned(data) -> GaussianDetector:
    det = GaussianDetector()
    for x in data:
        det.learn(x)
    return det


def test_pool_of_two_baselines_equals_the_baseline_learned_on_both():
    a, b = vectors(1, 150), vectors(2, 90, shift=0.3)
    both = learned(a + b)
    for parts in ([a, b], [b, a]):
        pooled = pool([stats_of(learned(p).state()) for p in parts])
        joint = stats_of(both.state())
        assert pooled.n == joint.n == 240
        order = [pooled.keys.index(k) for k in joint.keys]
        np.testing.assert_allclose(pooled.mean[order], joint.mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pooled.cov[np.ix_(order, order)], joint.cov, rtol=1e-9, atol=1e-12)
        merged = GaussianDetector.from_state(detector_state(pooled))
        probes = vectors(3, 20, shift=0.5) + a[:5]
        np.testing.assert_allclose([merged.score(x) for x in probes], [both.score(x) for x in probes], rtol=1e-9)
    # The between-machine term is what makes it exact: without it the spread would be too small.
    sa, sb = stats_of(learned(a).state()), stats_of(learned(b).state())
    within = (sa.cov * sa.n + sb.cov * sb.n) / (sa.n + sb.n)
    assert np.trace(stats_of(both.state()).cov) > np.trace(within) * 1.05


def streaming(data, learn_seconds: float = 100.0) -> StreamingModel:
    m = StreamingModel(registry.create("gaussian"), learn_seconds=learn_seconds, adapt_half_life_s=86400.0)
    for i, x in enumerate(data):
        m.update(x, ts=1.8e9 + i)
    return m


def share(m: StreamingModel, device: str) -> dict:
    return share_payload(m.state(), device=device, sensor="pump1", machine_type="pump-a", window_s=1.0,
                         agent_version="t", learned_at=m.baseline()["learned_at"])


def test_merge_of_two_agents_equals_the_baseline_learned_on_both_data_sets():
    a, b = vectors(4, 260), vectors(5, 260, shift=0.2)
    ma, mb = streaming(a), streaming(b)  # each learns 100 windows, then keeps adapting
    na, nb = ma.baseline()["windows"], mb.baseline()["windows"]
    assert na == nb == 100 and ma.baseline()["adapted"] > 0
    doc = merge([("a", share(ma, "gw-a")), ("b", share(mb, "gw-b"))])
    both = learned(a[:na] + b[:nb])
    joint = stats_of(both.state())
    assert doc["detector"]["n"] == 200 and doc["detector"]["keys"] == list(joint.keys)
    np.testing.assert_allclose(doc["detector"]["mean"], joint.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(doc["detector"]["cov"], joint.cov, rtol=1e-9, atol=1e-12)
    # The new machine's model scores as the detector learned on both data sets, from its first window.
    new = prior_model(doc, learn_seconds=100.0, adapt_half_life_s=None, cadence_s=1.0)
    probes = vectors(6, 10, shift=0.4)
    np.testing.assert_allclose([new.detector.score(x) for x in probes], [both.score(x) for x in probes], rtol=1e-9)
    score, ready, reason = new.update(probes[0], ts=2e9)
    assert ready and new.baseline()["state"] == "ready" and new.baseline()["calibration"]["method"] == "fleet"
    assert doc["calibration"]["tail"] > doc["calibration"]["median"] > 0




def test_share_holds_statistics_and_no_samples():
    data = vectors(7, 200)
    m = streaming(data, learn_seconds=150.0)
    payload = share(m, "gw-a")
    assert set(payload) == SHARE_KEYS
    assert set(payload["detector"]) == {"name", "version", "params", "keys", "n", "mean", "cov"}
    d = len(FEATURES)
    assert len(list(_numbers(payload))) <= d + d * d + 16  # statistics only: nothing grows with the windows
    raw = {round(v, 9) for x in data for v in x.values()}
    raw |= {round(math.log(v), 9) for x in data for v in x.values() if v > 0}
    leaked = [v for v in _numbers(payload) if round(v, 9) in raw]
    assert leaked == []
    text = json.dumps(payload)
    for field in ("pool", "recent", "snapshots", "probe", "reference", "pool_probe"):
        assert f'"{field}"' not in text


def test_what_cannot_be_pooled_exactly_is_refused_in_words():
    hst = registry.create("hst")
    with pytest.raises(PoolingError, match="detector 'hst' cannot be pooled exactly"):
        stats_of(hst.state(), "gw-b/pump1")
    ew = GaussianDetector(half_life=50.0)
    for x in vectors(8, 20):
        ew.learn(x)
    with pytest.raises(PoolingError, match="exponentially weighted"):
        stats_of(ew.state())
    fewer = learned([{k: v for k, v in x.items() if k != "temp.mean_c"} for x in vectors(9, 30)])
    with pytest.raises(PoolingError, match="features differ"):
        pool([stats_of(learned(vectors(9, 30)).state()), stats_of(fewer.state())])
    s = share(streaming(vectors(10, 150)), "gw-a")
    with pytest.raises(PoolingError, match="would count twice"):
        merge([("x", s), ("y", s)])
    with pytest.raises(PoolingError, match="not ready"):
        share(streaming(vectors(11, 20)), "gw-c")  # still learning
    with pytest.raises(ConfigError, match="detector 'hst' cannot be pooled exactly"):
        parse_config("device: {id: a}\nsensors: [{name: p, protocol: sim, detector: {type: hst}}]\n"
                     "fleet: {share_baseline: true, machine_type: pump-a}\n", "c.yaml")




def _prior_bundle(tmp_path, key) -> str:
    doc = merge([("a", share(streaming(vectors(12, 150)), "gw-a")),
                 ("b", share(streaming(vectors(13, 150, shift=0.1)), "gw-b"))], "pump-a")
    path = write_prior(doc, str(tmp_path / "prior"))
    bundle.sign(path, key)
    return path


def test_signed_prior_loads_and_a_bad_signature_is_refused(tmp_path):
    good_key, good_pub = bundle.keygen(str(tmp_path / "fleet"))
    other_key, _ = bundle.keygen(str(tmp_path / "other"))
    path = _prior_bundle(tmp_path, good_key)
    doc, kid = load_prior(path, [good_pub])
    assert doc["detector"]["n"] == 200 and kid
    for mtype, why in (("pump-b", "prior for machine_type 'pump-a', this agent is 'pump-b'"),
                       ("pump-a", "features do not match sensor 'pump1'")):  # the sim sensor computes others
        cfg = parse_config(f"device: {{id: a}}\nsensors: [{{name: pump1, protocol: sim}}]\nmodels: {{trusted_keys: "
                           f"[{good_pub}]}}\nfleet: {{prior: {path}, machine_type: {mtype}}}\n", "c.yaml")
        fleet = FleetShare(Log(), "t")
        assert fleet.prior_model(cfg, cfg.sensors[0]) is None
        assert why in fleet.status("pump1")["fleet"]["prior_refused"]["reason"]
    bundle.sign(path, other_key)  # signed by a key the agent does not trust
    with pytest.raises(bundle.BundleError, match="not trusted"):
        load_prior(path, [good_pub])
    bundle.sign(path, good_key)
    prior_file = Path(path, "prior.json")
    tampered = json.loads(prior_file.read_text())
    tampered["detector"]["mean"][0] += 1.0
    prior_file.write_text(json.dumps(tampered))
    with pytest.raises(bundle.BundleError, match="SHA-256 mismatch"):
        load_prior(path, [good_pub])

    cfg = parse_config(f"device: {{id: a}}\nsensors: [{{name: pump1, protocol: sim}}]\nmodels: {{trusted_keys: "
                       f"[{good_pub}]}}\nfleet: {{prior: {path}, machine_type: pump-a}}\n", "c.yaml")
    log = Log()
    fleet = FleetShare(log, "t")
    assert fleet.prior_model(cfg, cfg.sensors[0]) is None  # refused: the sensor learns on the device
    assert log.lines[0][0] == "fleet prior refused; learning on the device"
    assert "SHA-256 mismatch" in fleet.status("pump1")["fleet"]["prior_refused"]["reason"]


def test_fleet_merge_command_from_files_writes_a_verifiable_signed_prior(tmp_path):
    key, pub = bundle.keygen(str(tmp_path / "fleet"))
    files = []
    for i, shift in enumerate((0.0, 0.1, -0.1)):
        p = tmp_path / f"share{i}.json"
        p.write_text(json.dumps(share(streaming(vectors(20 + i, 150, shift=shift)), f"gw-{i}")))
        files.append(str(p))
    out = tmp_path / "prior"
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", *files, "--out", str(out),
                          "--key", key], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "pooled 300 windows of 3 machine(s)" in run.stdout
    assert subprocess.run([sys.executable, "-m", "agent.cli", "model", "verify", str(out), "--pubkey", pub],
                          cwd=ROOT, capture_output=True).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(Path(files[0]).read_text()),
                               "detector": registry.create("hst").state(), "device": "gw-9"}))
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", files[1], str(bad), "--out",
                          str(tmp_path / "p2"), "--key", key], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "cannot be pooled exactly" in run.stderr and "Traceback" not in run.stderr


def test_config_check_verifies_the_prior_as_the_agent_will(tmp_path):
    from agent.hotswap import sensor_features

    key, pub = bundle.keygen(str(tmp_path / "fleet"))
    other, _ = bundle.keygen(str(tmp_path / "other"))
    text = "device: {id: a}\nsensors: [{name: pump1, protocol: sim, detector: {learn_seconds: 600}}]\n"
    names = sensor_features(parse_config(text, "c.yaml").sensors[0])
    rng = np.random.default_rng(30)
    shares = []
    for i in range(2):
        rows = [dict(zip(names, rng.lognormal(0.0, 0.1, len(names)).tolist())) for _ in range(120)]
        shares.append((f"s{i}", share(streaming(rows), f"gw-{i}")))
    path = write_prior(merge(shares, "pump-a"), str(tmp_path / "prior"))
    bundle.sign(path, key)
    config = tmp_path / "c.yaml"
    config.write_text(text + f"models: {{trusted_keys: [{pub}]}}\nfleet: {{prior: {path}, machine_type: pump-a}}\n")
    check = [sys.executable, "-m", "agent.cli", "config", "check", "--config", str(config)]
    run = subprocess.run(check, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"pump1: starts from the fleet prior {path} (pump-a, 200 windows of 2 machine(s)" in run.stdout
    assert "baseline of" not in run.stdout  # no learning phase to describe
    bundle.sign(path, other)
    run = subprocess.run(check, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0 and "warning: fleet.prior: refused for pump1: signature does not verify" in run.stdout
    assert "pump1: baseline of 147 windows" in run.stdout  # it learns its own instead


def test_what_the_agent_shares_follows_the_fleet_section(tmp_path):
    """FleetShare.messages, as the publisher calls it after every connect: the topic, only the
    sensors in fleet.sensors, and a share over mqtt.max_packet_bytes held back with the reason."""
    import threading
    from types import SimpleNamespace

    from agent.hotswap import sensor_features
    from agent.pipeline import SensorPipeline

    def agent(extra: str):
        cfg = parse_config("device: {id: gw-1}\nsensors: [{name: pump1, protocol: sim}, {name: fan1, protocol: sim}]\n"
                           + extra, "c.yaml")
        workers = {}
        for s in cfg.sensors:
            pipe = SensorPipeline(device="gw-1", sensor_cfg=s, aggregate_interval=60.0, emit=lambda r: None)
            names = sensor_features(s)
            rng = np.random.default_rng(40)
            pipe.model = streaming([dict(zip(names, rng.lognormal(0, 0.1, len(names)).tolist())) for _ in range(110)])
            workers[s.name] = SimpleNamespace(pipeline=pipe, lock=threading.Lock(), cfg=s)
        return cfg, workers

    cfg, workers = agent("fleet: {share_baseline: true, machine_type: pump-a, sensors: [pump1]}\n")
    fleet = FleetShare(Log(), "t")
    (topic, payload), = fleet.messages(cfg, workers)
    assert topic == "pdm/fleet/pump-a/baseline/gw-1/pump1"
    doc = json.loads(payload)
    assert doc["sensor"] == "pump1" and doc["detector"]["n"] == 100 and doc["window_s"] == 4.096
    assert fleet.status("pump1")["fleet"]["shared"]["windows"] == 100 and fleet.status("fan1") == {}
    cfg, workers = agent("mqtt: {max_packet_bytes: 4096}\nfleet: {share_baseline: true, machine_type: pump-a}\n")
    log = Log()
    fleet = FleetShare(log, "t")
    assert fleet.messages(cfg, workers) == []
    assert "over mqtt.max_packet_bytes 4096" in fleet.status("pump1")["fleet"]["not_shared"]["reason"]
    assert log.lines[0][0] == "baseline not shared with the fleet"
    cfg, workers = agent("fleet: {share_baseline: false, machine_type: pump-a}\n")
    assert FleetShare(Log(), "t").messages(cfg, workers) == []


def test_fleet_merge_with_a_bad_key_writes_nothing(tmp_path):
    """A missing or wrong --key is refused before the prior is written: no unsigned prior is left at
    --out to block the retry (it would say '--out exists')."""
    key, pub = bundle.keygen(str(tmp_path / "fleet"))
    files = []
    for i in range(2):
        p = tmp_path / f"share{i}.json"
        p.write_text(json.dumps(share(streaming(vectors(40 + i, 150)), f"gw-{i}")))
        files.append(str(p))
    out = tmp_path / "prior"
    for bad in (str(tmp_path / "missing.key"), pub):
        run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", *files, "--out", str(out),
                              "--key", bad], cwd=ROOT, capture_output=True, text=True)
        assert run.returncode == 2 and "--key: private key" in run.stderr and "Traceback" not in run.stderr
        assert not out.exists()
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "merge", *files, "--out", str(out),
                          "--key", key], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_a_reload_changing_the_prior_says_the_running_sensor_keeps_its_baseline(tmp_path):
    """fleet.prior is read when a sensor starts; a SIGHUP changing it (or machine_type) must say that
    the running sensor is not affected, not log a bare 'configuration reloaded'."""
    import signal

    from agentproc import log_events, start_agent, stop, wait_until

    config = tmp_path / "c.yaml"
    text = ("device: {id: gw-r}\nmqtt: {host: 127.0.0.1, port: 1, reconnect_min_s: 1, reconnect_max_s: 5}\n"
            f"storage: {{dir: {tmp_path / 'st'}}}\nlogging: {{level: info, format: json}}\n"
            "sensors: [{name: pump1, protocol: sim}]\n")
    config.write_text(text)
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_until(lambda: any(e.get("event") == "agent running" for e in log_events(log)), 30, what="running")
        _, pub = bundle.keygen(str(tmp_path / "fleet"))
        config.write_text(text + f"models: {{trusted_keys: [{pub}]}}\n"
                          f"fleet: {{machine_type: pump-a, prior: {tmp_path / 'prior'}}}\n")
        agent.send_signal(signal.SIGHUP)
        said = wait_until(lambda: [e for e in log_events(log) if str(e.get("event", "")).startswith(
            "fleet prior settings changed")], 30, what="the reload saying the prior is not applied")
    finally:
        assert stop(agent) == 0
    assert said[0]["level"] == "warning" and said[0]["sensors"] == ["pump1"]
    assert said[0]["changed"] == ["fleet.prior", "fleet.machine_type"]
