"""Bundles pushed over MQTT with `storage.encrypt: true`: real Mosquitto, the real `pdm-agent run` and
`pdm-agent model push`, a key in `storage.key_file`.

Two pushes (v2, then v3) are applied; no file under `storage.dir` holds a bundle in plain (no
manifest.json, model.onnx or signature file, no byte run of the model or the manifest); `current`
and `previous` are sealed files. A broken v4, applied and rolled back at its first window, is
rolled back on disk too (`current` is v3 again). A restart with the key runs the pushed v3. A sealed pushed file
changed on disk is refused at the next start (log line, `model_refused` in the status), kept as
found, and the configured model (learned on the device) runs instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from agentproc import start_agent, stop, wait_until
from broker import Subscriber
from test_model_push import DEVICE, _config, _pump, _push, _status, bundles  # noqa: F401 (fixture)

PLAIN_NAMES = {"manifest.json", "model.onnx", "signature.json"}


def _plaintext_left(state, bundle_dir) -> list[str]:
    """Files under `state` that hold any bundle file in plain: by name, or by content."""
    probes = [p.read_bytes()[:48] for p in bundle_dir.iterdir() if p.is_file()]
    found = []
    for root, _, files in os.walk(state):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):  # e.g. the control socket
                continue
            with open(path, "rb") as f:
                data = f.read()
            if name in PLAIN_NAMES or any(p in data for p in probes) or b'"features"' in data:
                found.append(path)
    return found


def test_pushed_bundle_is_stored_sealed_runs_after_restart_and_tamper_is_refused(broker, tmp_path, bundles):
    config = _config(tmp_path, broker, bundles["pub"], commands=True)
    secret = tmp_path / "model.key"
    secret.write_bytes(os.urandom(32))
    cfg = yaml.safe_load(config.read_text())
    cfg["storage"].update(encrypt=True, key_file=str(secret))
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    state = tmp_path / f"state-{DEVICE}"
    pushed = state / "pushed" / "pump1"
    log = tmp_path / "agent.log"

    sub = Subscriber(broker.host, broker.port, ["plant/#"])
    agent = start_agent(config, log)
    try:
        wait_until(lambda: (_status(sub).get("commands") or {}).get("listening"), 20, what="commands listening")
        for version in ("v2", "v3"):
            code, out = _push(config, bundles[version], bundles["key"])
            assert code == 0 and f"bundle:pca@{version} swapped in" in out, out
            wait_until(lambda v=version: _pump(sub).get("model") == f"bundle:pca@{v}", 20, what=f"pushed {version} runs")
        assert _pump(sub)["bundle"]["path"] == str((pushed / "current").resolve() / "bundle.sealed")
        for link in ("current", "previous"):
            assert sorted(os.listdir(pushed / link)) == ["bundle.sealed"], link
        assert os.path.realpath(pushed / "current") != os.path.realpath(pushed / "previous")
        leftovers = [p for v in ("v2", "v3") for p in _plaintext_left(state, Path(bundles[v]))]
        assert leftovers == [], f"plaintext bundle files under storage.dir: {leftovers}"
        v3_entry = os.path.realpath(pushed / "current")
        code, out = _push(config, bundles["v4-broken"], bundles["key"])  # applied, then fails at its first window
        assert code == 0 and "bundle:pca@v4 swapped in" in out, out
        wait_until(lambda: "rolled back" in (_pump(sub).get("model_refused") or {}).get("reason", ""), 20,
                   what="the broken v4 rolled back")
        assert _pump(sub)["model"] == "bundle:pca@v3"
        assert os.path.realpath(pushed / "current") == v3_entry and not (pushed / "previous").exists()
        assert set(os.listdir(pushed)) == {"current", os.path.basename(v3_entry)}, "the failed v4 was kept"
    finally:
        assert stop(agent) == 0
        sub.close()

    sub = Subscriber(broker.host, broker.port, ["plant/#"])
    agent = start_agent(config, log)
    try:
        wait_until(lambda: _status(sub).get("state") == "online" and _pump(sub).get("windows", 0) > 0
                   and _pump(sub).get("model") == "bundle:pca@v3", 30, what="pushed v3 after a restart with the key")
        assert "model_refused" not in _pump(sub)
    finally:
        assert stop(agent) == 0
        sub.close()

    sealed_file = pushed / "current" / "bundle.sealed"
    tampered = bytearray(sealed_file.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01  # one bit of the ciphertext
    sealed_file.write_bytes(bytes(tampered))
    sub = Subscriber(broker.host, broker.port, ["plant/#"])
    agent = start_agent(config, log)
    try:
        pump = wait_until(lambda: (p := _pump(sub)).get("model_refused") and _status(sub).get("state") == "online"
                          and p.get("windows", 0) > 0 and p, 30, what="the tampered pushed bundle refused")
        reason = pump["model_refused"]["reason"]
        assert "pushed bundle" in reason and "authentication failed" in reason, reason
        assert "configured model" in reason and not pump["model"].startswith("bundle:"), pump
        assert sealed_file.read_bytes() == bytes(tampered), "the refused file was not kept as found"
    finally:
        assert stop(agent) == 0
        sub.close()
    text = log.read_text()
    assert "model bundle refused" in text and "Traceback" not in text
