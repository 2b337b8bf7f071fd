"""Hot swap under a running agent: `pdm-agent simulate` streams, `pdm-agent run` scores with a
signed bundle from a models directory; a bundle signed with an untrusted key is refused (status
says so, the old model keeps running), a good one is swapped in without a restart, and every
alert the agent raised reaches the broker."""

from __future__ import annotations

import json
import shutil
import time

import yaml
from agentproc import lines_sensor, pdm_agent, start_simulator, stop, write_config
from broker import Subscriber

from models.features import FeatureSpec
from models import bundle
from models.training import data
from models.training.train import train, write_bundle

FAULT_AT = 12.0


def _status(sub):
    msgs = [m for m in sub.snapshot() if m.topic.endswith("/status")]
    return json.loads(msgs[-1].payload) if msgs else {}


def _sensor(sub):
    return _status(sub).get("sensors", {}).get("pump1", {})


def test_bundle_hot_swap_refusal_and_no_lost_alerts(broker, tmp_path):
    spec = FeatureSpec.for_channels(3200.0, ("ax", "ay", "az", "temp"))
    healthy = data.load("sim:90::1", spec=spec, window=2048, hop=1024)
    key, pub = bundle.keygen(str(tmp_path / "k"))
    bad_key, _ = bundle.keygen(str(tmp_path / "bad"))
    staging = tmp_path / "staging"
    for version, k, created in (("v1", key, "2030-01-01T00:00:00Z"), ("v2-untrusted", bad_key, "2030-01-02T00:00:00Z"),
                                ("v2", key, "2030-01-03T00:00:00Z")):
        result = train(healthy, "pca", variants=("fp32",), version=version, repeat=5)
        result.manifest["created"] = created  # the newest bundle in a models directory is the one to run
        bundle.sign(write_bundle(result, str(staging / version)), k)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copytree(staging / "v1", models_dir / "v1")

    link = tmp_path / "ttySIM0"
    sim = start_simulator(link, fault="outer-race", fault_at=FAULT_AT, log=tmp_path / "sim.log")
    sensor = lines_sensor("pump1", link)
    sensor["detector"] = {"learn_seconds": 20, "bundle": str(models_dir)}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", sensors=[sensor],
                          models={"trusted_keys": [pub], "watch_interval_s": 0.5})
    cfg = yaml.safe_load(config.read_text())
    cfg["mqtt"]["status_interval_s"] = 1.0
    config.write_text(yaml.safe_dump(cfg))
    sub = Subscriber(broker.host, broker.port, ["#"])
    agent = pdm_agent("run", "--config", str(config))
    try:
        sub.wait_for(lambda ms: _sensor(sub).get("model") == "bundle:pca@v1", 20)

        shutil.copytree(staging / "v2-untrusted", models_dir / "v2-untrusted")
        sub.wait_for(lambda ms: "model_refused" in _sensor(sub), 15)
        refused = _sensor(sub)
        assert "not trusted" in refused["model_refused"]["reason"] and refused["model"] == "bundle:pca@v1"

        assert not any(m.topic.endswith("/alert") for m in sub.snapshot()), "alert on a healthy machine"
        sub.wait_for(lambda ms: any(m.topic.endswith("/alert") for m in ms), FAULT_AT + 30)
        shutil.rmtree(models_dir / "v2-untrusted")
        shutil.copytree(staging / "v2", models_dir / "v2")
        sub.wait_for(lambda ms: _sensor(sub).get("model") == "bundle:pca@v2", 15)
        assert _sensor(sub)["bundle"]["version"] == "v2" and "model_refused" not in _sensor(sub)
        time.sleep(3)
    finally:
        code = stop(agent)
        stop(sim)
    out = agent.stdout.read().decode()
    assert code == 0, out[-3000:]
    raised = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"event": "alert' in line]
    raised = [e for e in raised if str(e.get("event", "")).startswith("alert") and "id" in e]
    time.sleep(1.0)
    received = {json.loads(m.payload)["id"]: json.loads(m.payload) for m in sub.snapshot()
                if m.topic.endswith("/alert")}
    sub.close()
    assert raised and len(received) == len(raised), (len(received), len(raised))
    assert {a["model"] for a in received.values()} <= {"bundle:pca@v1", "bundle:pca@v2"}
    assert "Traceback" not in out
