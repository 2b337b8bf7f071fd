"""The second lock: Mosquitto with passwords and the shipped ACL example (docs/examples/
mosquitto-acl.conf). The agent runs as its own broker user (username = device.id); the release
workstation (`fleet-admin`) pushes with `--device` and the push is applied; another gateway that
publishes a validly signed command on the first gateway's command topic is stopped by the broker
(the agent never hears it); and the agent's own topics still work under the ACL."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from agentproc import pdm_agent, sim_sensor, start_agent, stop, wait_until
from broker import Broker

from agent.command_envelope import build, read_bundle_dir
from models.features import FeatureSpec
from models import bundle
from models.training import data
from models.training.train import train, write_bundle

ROOT = Path(__file__).resolve().parent.parent.parent
ACL = ROOT / "docs" / "examples" / "mosquitto-acl.conf"
USERS = {"press-07": "pw-press-07", "press-08": "pw-press-08", "fleet-admin": "pw-admin"}


def _client(broker, user, topics=()):
    got = []
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    c.username_pw_set(user, USERS[user])
    c.on_message = lambda cl, u, m: got.append((m.topic, bytes(m.payload)))
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(t, 1) for t in topics]) if topics else None
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c, got


def _config(tmp_path, broker, user, pub, device=None, **mqtt_extra):
    pw = tmp_path / f"{user}.pw"
    pw.write_text(USERS[user] + "\n")
    pw.chmod(0o600)
    cfg = {"device": {"id": device or user},
           "mqtt": {"host": broker.host, "port": broker.port, "username": user, "password_file": str(pw),
                    "status_interval_s": 2.0, **mqtt_extra},
           "storage": {"dir": str(tmp_path / f"state-{user}")},
           "sensors": [sim_sensor("pump1", learn_seconds=600)], "logging": {"format": "json"},
           "models": {"trusted_keys": [pub]}}
    path = tmp_path / f"{user}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_the_acl_example_lets_only_the_release_user_command_a_gateway(tmp_path):
    passwd = tmp_path / "passwd"
    for i, (user, pw) in enumerate(USERS.items()):
        subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b", *(["-c"] if i == 0 else []),
                        str(passwd), user, pw], check=True)
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    try:
        broker = Broker(workdir, listener=["allow_anonymous false", f"password_file {passwd}", f"acl_file {ACL}"])
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    broker.start()
    spec = FeatureSpec.for_channels(3200.0, ("ax", "ay", "az", "temp"))
    result = train(data.load("sim:40::1", spec=spec, window=1024, hop=512), "pca", variants=("fp32",),
                   version="v5", repeat=3)
    key, pub = bundle.keygen(str(tmp_path / "release"))
    v5 = write_bundle(result, str(tmp_path / "v5"))
    bundle.sign(v5, key)

    agent_cfg = _config(tmp_path, broker, "press-07", pub, commands=True)
    admin_cfg = _config(tmp_path, broker, "fleet-admin", pub, device="workstation")
    watcher, seen = _client(broker, "fleet-admin", ["pdm/#"])
    agent = start_agent(agent_cfg, tmp_path / "agent.log")

    def status():
        docs = [json.loads(p) for t, p in seen if t == "pdm/press-07/status"]
        return docs[-1] if docs else {}

    try:
        wait_until(lambda: (status().get("commands") or {}).get("enabled")
                   and status()["sensors"].get("pump1", {}).get("windows", 0) > 3, 20, what="agent online under the ACL")
        # Another gateway, with a validly signed command for press-07: the broker does not pass it on.
        _, payload, header = build(key_path=key, prefix="pdm", device="press-07", sensor="pump1",
                                   files=read_bundle_dir(v5))
        intruder, _ = _client(broker, "press-08")
        intruder.publish("pdm/press-07/cmd/model-push", payload, qos=1).wait_for_publish(5)
        intruder.publish("pdm/press-08/status", b'{"state": "online"}', qos=1).wait_for_publish(5)  # its own: allowed
        intruder.disconnect()
        intruder.loop_stop()
        time.sleep(4)
        assert ("pdm/press-08/status", b'{"state": "online"}') in seen  # connected, and its own topic passes
        assert not any(t.startswith("pdm/press-07/cmd/") for t, _ in seen)  # the command reached nobody
        assert status()["commands"]["last"] is None and status()["sensors"]["pump1"]["model"].startswith("gaussian@")

        proc = pdm_agent("model", "push", v5, "--config", str(admin_cfg), "--sensor", "pump1", "--device",
                         "press-07", "--key", key, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, (out + err).decode()
        wait_until(lambda: status()["sensors"]["pump1"]["model"] == "bundle:pca@v5", 10, what="bundle:pca@v5 running")
    finally:
        code = stop(agent)
        watcher.disconnect()
        watcher.loop_stop()
        broker.stop()
    assert code == 0
    assert "Traceback" not in (tmp_path / "agent.log").read_text()
