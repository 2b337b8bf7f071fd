"""Signed remote model updates, end to end: real Mosquitto, the real `pdm-agent run` and the real
`pdm-agent model push` (contract invocation, the key from $PDM_AGENT_SIGNING_KEY).

One agent (contract keys: device.id, mqtt.commands, models.trusted_keys, a simulated sensor that
goes faulty) gets: a newer bundle (applied, scoring and alerts go on with it), a tampered bundle,
an untrusted key, a downgrade (refused), a tampered envelope (flag flipped after signing), a
replayed command, an expired one and one signed for another device (refused), a signed
--allow-downgrade (applied); after a restart the pushed model still runs and the replay is still
refused. A second agent without `mqtt.commands` applies nothing.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import time

import pytest
import yaml
from agentproc import pdm_agent, sim_sensor, start_agent, stop, wait_until
from broker import Subscriber

from agent.command_envelope import build, read_bundle_dir
from models.features import FeatureSpec
from models import bundle
from models.training import data
from models.training.train import train, write_bundle

DEVICE = "press-07"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """v1, v2, v3 signed with the trusted key; v3-untrusted signed with another key."""
    root = tmp_path_factory.mktemp("bundles")
    spec = FeatureSpec.for_channels(3200.0, ("ax", "ay", "az", "temp"))
    result = train(data.load("sim:60::1", spec=spec, window=1024, hop=512), "pca", variants=("fp32",),
                   version="v1", repeat=5)
    key, pub = bundle.keygen(str(root / "release"))
    bad_key, _ = bundle.keygen(str(root / "intruder"))
    out = {"key": key, "pub": pub, "bad_key": bad_key}
    for version, k in (("v1", key), ("v2", key), ("v3", key), ("v3-untrusted", bad_key)):
        result.manifest["version"] = version.split("-")[0]
        out[version] = write_bundle(result, str(root / version))
        bundle.sign(out[version], k)
    # Signed and sound at the scaler's mean (the smoke test passes), but a scale of 1e-300 turns any real
    # window into an overflow: its first scores are not finite, as a broken model's would be.
    scaler = result.manifest["scaler"]
    result.manifest.update(version="v4", scaler={**scaler, "scale": [1e-300] * len(scaler["scale"])})
    out["v4-broken"] = write_bundle(result, str(root / "v4-broken"))
    bundle.sign(out["v4-broken"], key)
    return out


def _config(tmp_path, broker, pub, commands: bool, device: str = DEVICE):
    cfg = {"device": {"id": device},
           "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "plant", "status_interval_s": 2.0,
                    **({"commands": True} if commands else {})},
           "storage": {"dir": str(tmp_path / f"state-{device}")},
           "sensors": [sim_sensor("pump1", fault="outer-race", fault_at=40.0, learn_seconds=6)],
           "logging": {"format": "json"},
           "models": {"trusted_keys": [pub]}}
    path = tmp_path / f"{device}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _push(config, bundle_dir, key, *extra, timeout=60):
    proc = pdm_agent("model", "push", str(bundle_dir), "--config", str(config), "--sensor", "pump1", *extra,
                     env={"PDM_AGENT_SIGNING_KEY": key}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout + 30)
    return proc.returncode, out.decode() + err.decode()


def _status(sub, device=DEVICE):
    msgs = [m for m in sub.snapshot() if m.topic == f"plant/{device}/status"]
    return json.loads(msgs[-1].payload) if msgs else {}


def _pump(sub, device=DEVICE):
    return _status(sub, device).get("sensors", {}).get("pump1", {})


def _last(sub):
    return (_status(sub).get("commands") or {}).get("last") or {}


def _cmd_payloads(sub):
    return [m.payload for m in sub.snapshot() if m.topic == f"plant/{DEVICE}/cmd/model-push"]


def _publish(broker, topic, payload):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def _refused_with(sub, nonce_or_none, words, timeout=15):
    """Wait for a refused commands.last (with this id, when given) whose reason contains `words`."""
    def ok():
        last = _last(sub)
        return (last.get("result") == "refused" and (nonce_or_none is None or last.get("id") == nonce_or_none)
                and words in last.get("reason", ""))
    wait_until(ok, timeout, what=f"refusal with {words!r}; last: {_last(sub)}")


def test_signed_push_applied_refused_replayed_and_kept_across_restart(broker, tmp_path, bundles):
    config = _config(tmp_path, broker, bundles["pub"], commands=True)
    key = bundles["key"]
    sub = Subscriber(broker.host, broker.port, ["plant/#"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_until(lambda: (_status(sub).get("commands") or {}).get("enabled"), 20, what="status with commands")
        wait_until(lambda: _pump(sub).get("windows", 0) > 5, 20, what="windows scored")
        assert _pump(sub)["model"].startswith("gaussian@")  # learned on the device until a bundle comes

        code, out = _push(config, bundles["v2"], key)
        assert code == 0, out
        assert "applied" in out and "bundle:pca@v2" in out
        assert _last(sub)["result"] == "applied" and _last(sub)["sensor"] == "pump1" and _last(sub)["name"] == "model-push"
        wait_until(lambda: _pump(sub).get("model") == "bundle:pca@v2", 10, what="bundle:pca@v2 in the status")
        assert _pump(sub)["bundle"]["version"] == "v2"
        windows = _pump(sub)["windows"]
        wait_until(lambda: _pump(sub).get("windows", 0) > windows + 5, 15, what="scoring goes on after the swap")
        # The fault starts at 40 s (well after the push, even on a loaded machine): its alerts come from
        # the pushed model, without a restart.
        sub.wait_for(lambda ms: any(m.topic.endswith("/pump1/alert") and json.loads(m.payload)["model"] == "bundle:pca@v2"
                                    for m in ms), 60)

        tampered = tmp_path / "tampered"
        shutil.copytree(bundles["v3"], tampered)
        onnx = tampered / "model.onnx"
        onnx.write_bytes(onnx.read_bytes()[:-1] + bytes([onnx.read_bytes()[-1] ^ 1]))
        code, out = _push(config, tampered, key)
        assert code == 2 and "SHA-256 mismatch" in out, out

        code, out = _push(config, bundles["v3-untrusted"], bundles["bad_key"])
        assert code == 2 and "not trusted" in out, out

        code, out = _push(config, bundles["v1"], key)
        assert code == 2 and "not newer than the running v2" in out, out
        assert _pump(sub)["model"] == "bundle:pca@v2"

        # The flag flipped after signing: the envelope's signature no longer verifies.
        files = read_bundle_dir(bundles["v1"])
        topic, payload, header = build(key_path=key, prefix="plant", device=DEVICE, sensor="pump1", files=files)
        body = json.loads(payload)
        body["header"] = json.dumps({**header, "allow_downgrade": True}, sort_keys=True, separators=(",", ":"))
        _publish(broker, topic, json.dumps(body).encode())
        _refused_with(sub, header["nonce"], "command changed after signing")

        # Re-aimed at another device, expired, replayed: all refused.
        _, other, h = build(key_path=key, prefix="plant", device="press-08", sensor="pump1", files=files,
                            allow_downgrade=True)
        _publish(broker, topic, other)
        _refused_with(sub, h["nonce"], "meant for another device")
        _, old, h = build(key_path=key, prefix="plant", device=DEVICE, sensor="pump1", files=files,
                          allow_downgrade=True, issued_at=time.time() - 3600)
        _publish(broker, topic, old)
        _refused_with(sub, h["nonce"], "command expired")
        captured_v2 = _cmd_payloads(sub)[0]  # the first push, as anyone on the broker saw it
        _publish(broker, topic, captured_v2)
        _refused_with(sub, json.loads(json.loads(captured_v2)["header"])["nonce"], "replayed command")
        assert _pump(sub)["model"] == "bundle:pca@v2"

        code, out = _push(config, bundles["v1"], key, "--allow-downgrade")
        assert code == 0 and "signed downgrade" in out, out
        wait_until(lambda: _pump(sub).get("model") == "bundle:pca@v1", 10, what="bundle:pca@v1 after the signed downgrade")
        captured_v1 = _cmd_payloads(sub)[-1]
    finally:
        first = stop(agent)
    assert first == 0

    agent = start_agent(config, log)
    try:
        sub.wait_for(lambda ms: _status(sub).get("state") == "online" and _pump(sub).get("model") == "bundle:pca@v1"
                     and _pump(sub).get("windows", 0) > 0, 20)
        _publish(broker, f"plant/{DEVICE}/cmd/model-push", captured_v1)
        _refused_with(sub, json.loads(json.loads(captured_v1)["header"])["nonce"], "replayed command")
        assert _pump(sub)["model"] == "bundle:pca@v1"
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count('"remote command applied"') == 2


def test_commands_are_off_by_default(broker, tmp_path, bundles):
    config = _config(tmp_path, broker, bundles["pub"], commands=False, device="press-09")
    sub = Subscriber(broker.host, broker.port, ["plant/#"])
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        wait_until(lambda: _pump(sub, "press-09").get("windows", 0) > 2, 20, what="agent scoring")
        assert _status(sub, "press-09")["commands"] == {"enabled": False, "last": None}
        code, out = _push(config, bundles["v2"], bundles["key"])
        assert code == 2 and "does not accept remote commands" in out and "nothing was sent" in out, out
        # Even a valid command published straight to its topic is not heard.
        topic, payload, _ = build(key_path=bundles["key"], prefix="plant", device="press-09", sensor="pump1",
                                  files=read_bundle_dir(bundles["v2"]))
        _publish(broker, topic, payload)
        time.sleep(4)
        assert _pump(sub, "press-09")["model"].startswith("gaussian@")
        assert _status(sub, "press-09")["commands"]["last"] is None
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0
    assert not os.path.exists(tmp_path / "state-press-09" / "pushed")


def test_oversize_commands_are_refused_with_words(tmp_path, bundles):
    """The agent's mqtt.command_max_bytes, and a broker whose max_packet_size is below the command."""
    from broker import Broker

    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    size = len(build(key_path=bundles["key"], prefix="plant", device=DEVICE, sensor="pump1",
                     files=read_bundle_dir(bundles["v2"]))[1])
    broker = Broker(workdir, listener=["allow_anonymous true", f"max_packet_size {size // 2}"])
    broker.start()
    try:
        config = _config(tmp_path, broker, bundles["pub"], commands=True)
        cfg = yaml.safe_load(config.read_text())
        cfg["mqtt"]["command_max_bytes"] = 4096
        config.write_text(yaml.safe_dump(cfg))
        sub = Subscriber(broker.host, broker.port, ["plant/#"])
        agent = start_agent(config, tmp_path / "agent.log")
        try:
            wait_until(lambda: _pump(sub).get("windows", 0) > 2, 20, what="agent scoring")
            code, out = _push(config, bundles["v2"], bundles["key"], "--timeout", "8", timeout=8)
            # the command's size varies by a byte or two between builds (issued_at, nonce): compare loosely
            said = re.search(r"did not take the command \((\d+) bytes\)", out)
            assert code == 1 and said and abs(int(said.group(1)) - size) <= 16 and "max_packet_size" in out, out
            before = len(sub.snapshot())
            broker.stop()
            broker.conf.write_text(broker.conf.read_text().replace(f"max_packet_size {size // 2}\n", ""))
            broker.start()
            wait_until(lambda: any(m.topic.endswith("/status") and json.loads(m.payload)["state"] == "online"
                                   for m in sub.snapshot()[before:]), 20, what="agent and watcher reconnected")
            code, out = _push(config, bundles["v2"], bundles["key"])
            said = re.search(r"command of (\d+) bytes exceeds mqtt.command_max_bytes \(4096\)", out)
            assert code == 2 and said and abs(int(said.group(1)) - size) <= 16, out
            assert _pump(sub)["model"].startswith("gaussian@")
        finally:
            assert stop(agent) == 0
            sub.close()
    finally:
        broker.stop()


def test_the_model_installed_last_runs_after_a_restart(broker, tmp_path, bundles):
    """Configured models directory with v1; push v2, then a broken v4 that is rolled back to v2 at its
    first window; a restart runs v2 (not v1, not v4); then a local v3 copied into the models directory
    replaces it (the pushed one is retired): a restart runs v3."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copytree(bundles["v1"], models_dir / "v1")
    config = _config(tmp_path, broker, bundles["pub"], commands=True)
    cfg = yaml.safe_load(config.read_text())
    cfg["sensors"][0]["detector"]["bundle"] = str(models_dir)
    cfg["models"]["watch_interval_s"] = 0.5
    config.write_text(yaml.safe_dump(cfg))
    sub = Subscriber(broker.host, broker.port, ["plant/#"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    try:
        wait_until(lambda: _pump(sub).get("model") == "bundle:pca@v1" and (_status(sub).get("commands") or {}).get("listening"),
                   20, what="configured v1")
        code, out = _push(config, bundles["v2"], bundles["key"], "--sensor", "pump9")
        assert code == 2 and "no sensor 'pump9' runs on this device (sensors: pump1)" in out, out
        code, out = _push(config, bundles["v2"], bundles["key"])
        assert code == 0, out
        code, out = _push(config, bundles["v4-broken"], bundles["key"])
        assert code == 0 and "bundle:pca@v4 swapped in" in out, out  # applied: it passed every check
        wait_until(lambda: "rolled back" in (_pump(sub).get("model_refused") or {}).get("reason", ""), 20,
                   what="the broken v4 rolled back at its first window")
        assert _pump(sub)["model"] == "bundle:pca@v2"
        stop(agent)
        agent = start_agent(config, log)
        wait_until(lambda: _status(sub).get("state") == "online" and _pump(sub).get("model") == "bundle:pca@v2", 20,
                   what="pushed v2 after a restart, over the configured v1")
        shutil.copytree(bundles["v3"], models_dir / "v3")
        result = json.loads((models_dir / "v3" / "manifest.json").read_text())
        assert result["version"] == "v3"
        os.utime(models_dir / "v3")
        wait_until(lambda: _pump(sub).get("model") == "bundle:pca@v3", 20, what="local v3 swapped in")
        assert not (tmp_path / f"state-{DEVICE}" / "pushed" / "pump1").exists()
        stop(agent)
        agent = start_agent(config, log)
        wait_until(lambda: _status(sub).get("state") == "online" and _pump(sub).get("windows", 0) > 0
                   and _pump(sub).get("model") == "bundle:pca@v3", 20, what="v3 after the second restart")
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0 and "Traceback" not in log.read_text()
