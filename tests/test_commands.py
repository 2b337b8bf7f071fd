"""Signed command envelopes and pushed bundles on disk, without a broker: what is refused and why,
the version order, and a pushed bundle that fails after its swap is rolled back on disk too (a
restart does not bring it back)."""

from __future__ import annotations

import base64
import json
import math
import os

import numpy as np
import pytest

from agent import pushed_bundles
from agent.command_envelope import CommandRefused, build, verify
from agent.commands import version_key
from agent.hotswap import Guarded, ModelManager
from models import bundle
from models.training.data import Dataset
from models.training.train import train, write_bundle

NAMES = [f"ax.f{i}" for i in range(6)]
TOPIC = "pdm/gw-1/cmd/model-push"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    key, pub = bundle.keygen(str(tmp / "k"))
    other, other_pub = bundle.keygen(str(tmp / "o"))
    rng = np.random.default_rng(0)
    result = train(Dataset(rng.normal(size=(300, 6)) + 5.0, NAMES, None, "test"), "pca", variants=("fp32",),
                   version="v1", repeat=20)
    paths = {}
    for v in ("v1", "v2"):
        result.manifest["version"] = v
        paths[v] = write_bundle(result, str(tmp / v))
        bundle.sign(paths[v], key)
    return {"key": key, "pub": pub, "other": other, "other_pub": other_pub, **paths}


def _files(path):
    return {n: open(os.path.join(path, n), "rb").read() for n in os.listdir(path)}


def _verify(payload, pub, **kw):
    opts = {"topic": TOPIC, "device": "gw-1", "max_bytes": 2**24, "max_age_s": 300.0, **kw}
    return verify(payload, [pub], **opts)


def test_a_signed_command_verifies_and_carries_the_bundle(keys):
    _, payload, header = build(key_path=keys["key"], prefix="pdm", device="gw-1", sensor="pump1",
                               files=_files(keys["v1"]), allow_downgrade=True)
    cmd = _verify(payload, keys["pub"])
    assert cmd.sensor == "pump1" and cmd.allow_downgrade and cmd.nonce == header["nonce"]
    assert cmd.files == _files(keys["v1"])


@pytest.mark.parametrize("change, words", [
    (lambda b, h: b.update(header=json.dumps({**h, "sensor": "pump2"})), "command changed after signing"),
    (lambda b, h: b["files"].update({"model.onnx": base64.b64encode(b"x").decode()}), "SHA-256 mismatch"),
    (lambda b, h: b["files"].update({"extra.bin": "AA=="}), "not covered by the signature: extra.bin"),
    (lambda b, h: b["files"].pop("manifest.json"), "'manifest.json' missing"),
    (lambda b, h: b.pop("signature"), "malformed command"),
])
def test_a_changed_command_is_refused_with_the_reason(keys, change, words):
    _, payload, header = build(key_path=keys["key"], prefix="pdm", device="gw-1", sensor="pump1",
                               files=_files(keys["v1"]))
    body = json.loads(payload)
    change(body, header)
    with pytest.raises(CommandRefused, match=words):
        _verify(json.dumps(body).encode(), keys["pub"])


def test_untrusted_key_other_device_old_future_and_oversize_commands_are_refused(keys):
    files = _files(keys["v1"])
    _, p, _ = build(key_path=keys["other"], prefix="pdm", device="gw-1", sensor="s", files=files)
    with pytest.raises(CommandRefused, match="which is not trusted"):
        _verify(p, keys["pub"])
    _, p, _ = build(key_path=keys["key"], prefix="pdm", device="gw-2", sensor="s", files=files)
    with pytest.raises(CommandRefused, match="meant for another device"):
        _verify(p, keys["pub"])  # signed for gw-2, arrived on gw-1's topic
    _, p, _ = build(key_path=keys["key"], prefix="other", device="gw-1", sensor="s", files=files)
    with pytest.raises(CommandRefused, match="meant for another device or topic"):
        _verify(p, keys["pub"])  # same device id under another prefix (another plant)
    _, p, h = build(key_path=keys["key"], prefix="pdm", device="gw-1", sensor="s", files=files)
    with pytest.raises(CommandRefused, match="command expired: issued 301 s ago"):
        _verify(p, keys["pub"], now=h["issued_at"] + 301)
    with pytest.raises(CommandRefused, match="in this gateway's future"):
        _verify(p, keys["pub"], now=h["issued_at"] - 3600)
    with pytest.raises(CommandRefused, match=f"command of {len(p)} bytes exceeds mqtt.command_max_bytes"):
        _verify(p, keys["pub"], max_bytes=len(p) - 1)


def test_versions_order_numbers_as_numbers():
    assert version_key("v10") > version_key("v9") > version_key("v1")
    assert version_key("1.10") > version_key("1.9")
    assert version_key("20301202T000000Z") > version_key("20301201T235959Z")
    assert not version_key("v2") > version_key("v2")


class _Pipeline:
    def __init__(self, model):
        self.model = model
        self.model_name = "gaussian@1"


class _Failing:
    """A swapped-in model whose scoring raises (as a broken graph would on real data)."""

    learns, name, version, model = False, "pca", "v2", "pca@v2"

    def update(self, x, ts):
        raise RuntimeError("graph failed")


class _Log:
    def __getattr__(self, name):
        return lambda *a, **k: None


def test_a_pushed_bundle_rolled_back_after_its_swap_is_not_run_again_after_a_restart(keys, tmp_path):
    storage = str(tmp_path)
    mm = ModelManager([keys["pub"]], _Log(), storage_dir=storage)
    first = pushed_bundles.stage(storage, "pump1", "n1", _files(keys["v1"]))
    pushed_bundles.commit(storage, "pump1", first)
    second = pushed_bundles.stage(storage, "pump1", "n2", _files(keys["v2"]))
    pushed_bundles.commit(storage, "pump1", second)
    assert pushed_bundles.current(storage, "pump1") == os.path.realpath(second)

    v1_model, _ = mm.load("pump1", first, NAMES)
    pipeline = _Pipeline(v1_model)
    mm.attach("pump1", pipeline)
    _, b2 = mm.load("pump1", second, NAMES)
    mm.swap_in("pump1", _Failing(), b2)
    assert mm.running_bundle_version("pump1") == "v2"
    score = pipeline.model.update(dict(zip(NAMES, [5.0] * 6)), 0.0)[0]
    assert math.isfinite(score) and isinstance(pipeline.model, Guarded) and pipeline.model.failed
    assert mm.running_bundle_version("pump1") == "v1"
    assert "rolled back" in mm.status("pump1")["model_refused"]["reason"]
    assert pushed_bundles.current(storage, "pump1") == os.path.realpath(first)  # what a restart loads
    assert not os.path.exists(second)


def test_a_local_bundle_swapped_in_retires_the_pushed_one(keys, tmp_path):
    storage = str(tmp_path)
    path = pushed_bundles.stage(storage, "pump1", "n1", _files(keys["v2"]))
    pushed_bundles.commit(storage, "pump1", path)
    assert pushed_bundles.retire(storage, "pump1")
    assert pushed_bundles.current(storage, "pump1") is None


def test_signed_but_unsafe_names_are_refused_before_anything_is_written(keys):
    """Even with the trusted key, a file name or nonce that would leave the staging directory is refused."""
    _, p, _ = build(key_path=keys["key"], prefix="pdm", device="gw-1", sensor="s", files={"../evil": b"x"})
    with pytest.raises(CommandRefused, match="invalid file name '../evil'"):
        _verify(p, keys["pub"])
    _, p, _ = build(key_path=keys["key"], prefix="pdm", device="gw-1", sensor="s", files=_files(keys["v1"]),
                    nonce="../../../../tmp/x")
    with pytest.raises(CommandRefused, match="'nonce' must be 16-64 lowercase hex digits"):
        _verify(p, keys["pub"])


def test_model_push_usage_errors_exit_2_with_words(keys, tmp_path, capsys, monkeypatch):
    from agent.cli import main

    monkeypatch.delenv("PDM_AGENT_SIGNING_KEY", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text("device: {id: desk}\nsensors: [{name: pump1, protocol: sim}]\n")
    args = ["model", "push", keys["v1"], "--config", str(config), "--sensor", "pump1"]
    assert main(args) == 2
    assert "the command must be signed: give --key FILE" in capsys.readouterr().err
    assert main(args + ["--key", str(tmp_path / "missing.key")]) == 2
    assert "private key" in capsys.readouterr().err
    unsigned = tmp_path / "unsigned"
    unsigned.mkdir()
    (unsigned / "manifest.json").write_text("{}")
    assert main(["model", "push", str(unsigned), "--config", str(config), "--sensor", "pump1", "--key", keys["key"]]) == 2
    assert "is not signed (no signature.json)" in capsys.readouterr().err
    assert main(args + ["--key", keys["key"], "--device", "a/b"]) == 2
    assert "only letters, digits" in capsys.readouterr().err
