"""`storage.encrypt: true` with real `pdm-agent` processes and a real Mosquitto.

- the key as the systemd credential `model-key` ($CREDENTIALS_DIRECTORY): the agent learns, stops,
  and the baseline on disk is sealed (no plaintext copy); without the key, and with a wrong key, it
  refuses to start (exit 2, a clear error) and the sealed file is untouched; restarted with the
  right key it resumes the same baseline without learning again;
- a sealed baseline changed on disk, or copied from another sensor, is refused and reported (log
  line, `refused` in the status), kept aside for inspection, and the sensor learns anew;
- `pdm-agent model install` stores a signed bundle encrypted; the agent runs it, also after a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from agentproc import log_events, pdm_agent, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Subscriber

STATUS = "pdm/e2e-gw/status"


def _sensor_status(sub: Subscriber, sensor: str = "pump1", live: bool = False) -> dict:
    docs = [json.loads(m.payload) for m in sub.snapshot() if m.topic == STATUS and not (live and m.retain)]
    online = [d for d in docs if d.get("state") == "online" and sensor in d.get("sensors", {})]
    return online[-1]["sensors"][sensor] if online else {}


def _baseline(sub: Subscriber, sensor: str = "pump1", live: bool = False) -> dict:
    return _sensor_status(sub, sensor, live).get("baseline", {})


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused_start(config, env: dict) -> str:
    proc = pdm_agent("run", "--config", str(config), env=env)
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert proc.returncode == 2, text[-2000:]
    assert "Traceback" not in text
    return text


def test_encrypted_baseline_survives_restart_and_refuses_missing_or_wrong_key(broker, tmp_path):
    state = tmp_path / "state"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "model-key").write_bytes(os.urandom(32))
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=state, interval=1,
                          sensors=[sim_sensor("pump1", learn_seconds=3)])
    text = config.read_text().replace(f"  dir: {state}\n", f"  dir: {state}\n  encrypt: true\n")
    config.write_text(text)
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log, env=env)
    try:
        first = wait_until(lambda: (b := _baseline(sub)).get("state") == "ready" and b, 40, what="baseline ready")
    finally:
        assert stop(agent) == 0
        sub.close()
    sealed = state / "models" / "pump1.json.sealed"
    assert sealed.exists() and not (state / "models" / "pump1.json").exists()
    blob = sealed.read_bytes()
    assert blob.startswith(b"PDMSEAL1") and b"ax.rms_g" not in blob and b"features" not in blob
    before = _digest(sealed), sealed.stat().st_mtime_ns

    no_key = {"CREDENTIALS_DIRECTORY": ""}
    out = _refused_start(config, no_key)
    assert "storage.encrypt: no key" in out and "model-key" in out

    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(os.urandom(32))
    config_wrong = tmp_path / "wrong.yaml"
    config_wrong.write_text(text.replace("  encrypt: true\n", f"  encrypt: true\n  key_file: {wrong}\n"))
    out = _refused_start(config_wrong, no_key)
    assert "wrong key" in out and str(sealed) in out

    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(16))
    config_short = tmp_path / "short.yaml"
    config_short.write_text(text.replace("  encrypt: true\n", f"  encrypt: true\n  key_file: {short}\n"))
    out = _refused_start(config_short, no_key)
    assert "holds 16 bytes; at least 32" in out
    assert (_digest(sealed), sealed.stat().st_mtime_ns) == before, "a refused start touched the baseline"

    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log2 = tmp_path / "agent2.log"
    agent = start_agent(config, log2, env=env)
    try:
        wait_until(lambda: any(e.get("event") == "learned baseline restored" for e in log_events(log2)), 30,
                   what="encrypted baseline restored")
        again = wait_until(lambda: (b := _baseline(sub, live=True)).get("state") == "ready" and b, 30,
                           what="status from the restarted agent")
        assert again["learned_at"] == first["learned_at"] and again["windows"] == first["windows"]
        assert not any(e.get("event") == "baseline learned" for e in log_events(log2)), "learned again"
    finally:
        assert stop(agent) == 0
        sub.close()


def test_tampered_or_swapped_baseline_is_refused_reported_kept_and_learned_anew(broker, tmp_path):
    state = tmp_path / "state"
    key = tmp_path / "model.key"
    key.write_bytes(os.urandom(48))
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=state, interval=1,
                          sensors=[sim_sensor("pump1", learn_seconds=3), sim_sensor("pump2", learn_seconds=3)])
    config.write_text(config.read_text().replace(f"  dir: {state}\n", f"  dir: {state}\n  encrypt: true\n"
                                                 f"  key_file: {key}\n"))
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        wait_until(lambda: all(_baseline(sub, s).get("state") == "ready" for s in ("pump1", "pump2")), 40,
                   what="both baselines ready")
        first = {s: _baseline(sub, s) for s in ("pump1", "pump2")}
    finally:
        assert stop(agent) == 0
        sub.close()
    models = state / "models"
    one, two = models / "pump1.json.sealed", models / "pump2.json.sealed"
    shutil.copyfile(one, two)  # pump1's intact file under pump2's name: it authenticates for pump1 only
    two_bytes = two.read_bytes()
    tampered = bytearray(one.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01  # one bit in pump1's ciphertext
    one.write_bytes(bytes(tampered))

    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent2.log"
    agent = start_agent(config, log)
    try:
        for sensor in ("pump1", "pump2"):
            b = wait_until(lambda s=sensor: (b := _baseline(sub, s, live=True)).get("refused") and b, 30,
                           what=f"{sensor}: refusal in the status")
            assert "authentication failed" in b["refused"]["reason"]
            # learning anew (a short learn_seconds may already have ended by the first status)
            assert b["state"] == "learning" or b["learned_at"] != first[sensor]["learned_at"]
        errors = [e for e in log_events(log) if e.get("event") == "encrypted baseline refused; moved aside for "
                  "inspection, not loaded"]
        assert {e["sensor"] for e in errors} == {"pump1", "pump2"}
        kept = {e["sensor"]: e["moved_to"] for e in errors}
        assert open(kept["pump1"], "rb").read() == bytes(tampered), "the evidence was not kept as found"
        assert open(kept["pump2"], "rb").read() == two_bytes
        again = wait_until(lambda: (b := _baseline(sub, "pump1", live=True)).get("state") == "ready" and b, 40,
                           what="pump1 learned anew")
        assert again["learned_at"] != first["pump1"]["learned_at"]
        assert not any(e.get("event") == "learned baseline restored" for e in log_events(log))
    finally:
        assert stop(agent) == 0
        sub.close()
    assert one.exists() and one.read_bytes() != bytes(tampered), "the new baseline was not saved sealed"


def test_installed_bundle_is_stored_encrypted_and_runs_across_restarts(broker, tmp_path):
    from models.features import FeatureSpec
    from models import bundle
    from models.training import data
    from models.training.train import train, write_bundle

    spec = FeatureSpec.for_channels(3200.0, ("ax", "ay", "az", "temp"))
    healthy = data.load("sim:40::1", spec=spec, window=1024, hop=512)
    key, pub = bundle.keygen(str(tmp_path / "k"))
    result = train(healthy, "pca", variants=("fp32",), version="v7", repeat=3)
    bundle.sign(write_bundle(result, str(tmp_path / "b")), key)
    onnx = (tmp_path / "b" / "model.onnx").read_bytes()

    state = tmp_path / "state"
    secret = tmp_path / "model.key"
    secret.write_bytes(os.urandom(32))
    sensor = sim_sensor("pump1", learn_seconds=3)
    sensor["detector"]["bundle"] = str(state / "bundles" / "pump1")
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=state, interval=1, sensors=[sensor],
                          models={"trusted_keys": [pub]})
    config.write_text(config.read_text().replace(f"  dir: {state}\n", f"  dir: {state}\n  encrypt: true\n"
                                                 f"  key_file: {secret}\n"))
    inst = pdm_agent("model", "install", str(tmp_path / "b"), "--config", str(config), "--sensor", "pump1")
    out, _ = inst.communicate(timeout=60)
    assert inst.returncode == 0, out.decode()
    assert b"installed (encrypted)" in out
    [stored] = list((state / "bundles" / "pump1").iterdir())
    blob = stored.read_bytes()
    assert stored.name.endswith("pca-v7.sealed") and onnx[:64] not in blob and b"manifest" not in blob

    for run in (1, 2):
        sub = Subscriber(broker.host, broker.port, ["pdm/#"])
        agent = start_agent(config, tmp_path / f"agent{run}.log")
        try:
            s = wait_until(lambda: (s := _sensor_status(sub, live=True)).get("model") == "bundle:pca@v7" and s, 40,
                           what=f"run {run}: the installed bundle scores pump1")
            assert s["bundle"]["path"] == str(stored) and "model_refused" not in s
        finally:
            assert stop(agent) == 0
            sub.close()
