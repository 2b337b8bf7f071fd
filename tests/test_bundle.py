"""Signed bundles: verify refuses tampering with the reason (exit 2), the loader and the hot-swap
guard keep the old model, and the daemon never imports the training libraries."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from models import bundle
from models.base import Detector
from models.onnx_runtime import BundleModel
from models.training import export
from models.training.data import Dataset
from models.training.train import train, write_bundle

ROOT = Path(__file__).resolve().parent.parent
NAMES = [f"ax.f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """A small PCA bundle (fp32 only: seconds) and its key pair."""
    tmp = tmp_path_factory.mktemp("bundle")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 5.0
    result = train(Dataset(x, NAMES, None, "test"), "pca", variants=("fp32",), version="v1", repeat=20)
    path = write_bundle(result, str(tmp / "b"))
    key, pub = bundle.keygen(str(tmp / "k"))
    bundle.sign(path, key)
    other_key, other_pub = bundle.keygen(str(tmp / "other"))
    return {"path": path, "key": key, "pub": pub, "other_pub": other_pub, "other_key": other_key, "tmp": tmp}


def _copy(signed, name) -> str:
    dst = signed["tmp"] / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(signed["path"], dst)
    return str(dst)


def test_verify_accepts_the_signed_bundle_and_loads_it(signed, capsys):
    assert main(["model", "verify", signed["path"], "--pubkey", signed["pub"]]) == 0
    assert "OK: bundle:pca@v1" in capsys.readouterr().out
    b = bundle.verify(signed["path"], [signed["pub"]])
    model = BundleModel.from_bundle(b)
    assert isinstance(model.detector, Detector)
    typical = dict(zip(NAMES, b.manifest["scaler"]["mean"]))
    score, ready, reason = model.update(typical, 0.0)
    assert ready and 0.0 <= score < 0.5 and len(reason) == 3
    far = {k: v + 50.0 for k, v in typical.items()}
    assert model.update(far, 1.0)[0] > 0.9


def _flip(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tamper, reason", [
    ("flip_model", "model.onnx: SHA-256 mismatch"),
    ("flip_manifest", "manifest changed after signing"),
    ("wrong_key", "which is not trusted"),
    ("no_signature", "missing signature"),
    ("extra_file", "files not covered by the signature: run.sh"),
])
def test_verify_refuses_tampered_bundles_with_the_reason(signed, capsys, tamper, reason):
    path = _copy(signed, tamper)
    if tamper == "flip_model":
        _flip(Path(path, "model.onnx"))
    elif tamper == "flip_manifest":
        _flip(Path(path, "manifest.json"), 40)
    elif tamper == "wrong_key":
        bundle.sign(path, signed["other_key"])
    elif tamper == "no_signature":
        Path(path, "signature.json").unlink()
    else:
        Path(path, "run.sh").write_text("echo hi\n")
    assert main(["model", "verify", path, "--pubkey", signed["pub"]]) == 2
    assert reason in capsys.readouterr().err
    with pytest.raises(bundle.BundleError, match=reason.split(":")[0]):
        bundle.verify(path, [signed["pub"]])


def test_info_and_export(signed, capsys, tmp_path):
    assert main(["model", "info", signed["path"]]) == 0
    out = capsys.readouterr().out
    assert "bundle:pca@v1" in out and "sha256" in out and "fp32" in out
    assert main(["model", "export", signed["path"], "--out", str(tmp_path / "m.onnx"),
                 "--pubkey", signed["pub"]]) == 0
    assert (tmp_path / "m.onnx").read_bytes() == Path(signed["path"], "model.onnx").read_bytes()


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **kw):
        self.lines.append((event, kw))

    error = warning = info


class _Pipeline:
    def __init__(self, model):
        self.model = model

    @property
    def model_name(self):
        return f"{self.model.name}@{self.model.version}"


def _sensor_cfg(path):
    from agent.config import parse_sensor

    return parse_sensor(name="s1", protocol="sim", channels=["ax"], detector={"bundle": path})


def test_manager_refuses_a_bad_swap_and_keeps_the_running_model(signed, monkeypatch):
    from agent import hotswap

    monkeypatch.setattr(hotswap, "sensor_features", lambda cfg: NAMES)
    log = _Log()
    live = _copy(signed, "live")
    mgr = hotswap.ModelManager([signed["pub"]], log, poll_s=0.0)
    model = mgr.initial(_sensor_cfg(live))
    assert model is not None and model.version == "v1"
    pipe = _Pipeline(model)
    mgr.attach("s1", pipe)
    _flip(Path(live, "model.onnx"))
    mgr.poll(1.0)
    mgr.poll(2.0)  # settled: now verified, refused
    assert pipe.model is model
    assert "SHA-256 mismatch" in mgr.status("s1")["model_refused"]["reason"]
    assert any(e == "model bundle refused; keeping the running model" for e, _ in log.lines)


def test_guard_rolls_back_on_non_finite_scores():
    from agent.hotswap import Guarded

    class Fixed:
        def __init__(self, value, version):
            self.value, self.name, self.version, self.ready = value, "m", version, True

        def update(self, x, ts):
            return self.value, True, []

    failures = []
    guard = Guarded(Fixed(math.nan, "new"), Fixed(0.2, "old"), lambda g, why: failures.append(why))
    assert guard.update({}, 0.0)[0] == 0.2 and guard.version == "old"
    assert failures == ["non-finite score"]


def test_a_bundle_whose_model_gives_nan_is_refused_at_load(signed, tmp_path):
    from agent.hotswap import ModelManager

    m = bundle.read_unverified(signed["path"])
    nan_model = export.regressor([np.ones((6, 1))], [np.array([np.nan])], "relu", exp_output=False)
    path = bundle.write(str(tmp_path / "nan"), {k: v for k, v in m.items() if k not in ("files", "format")},
                       {"model.onnx": nan_model})
    bundle.sign(path, signed["key"])
    with pytest.raises(bundle.BundleError, match="non-finite"):
        ModelManager([signed["pub"]], _Log())._load("s1", path, NAMES)


def test_daemon_path_imports_no_training_library(signed):
    code = f"""
import sys, agent.service, agent.cli, agent.hotswap, models.bundle, models.onnx_runtime
assert 'onnxruntime' not in sys.modules, 'onnxruntime imported without a bundle'
from models.onnx_runtime import BundleModel
m = BundleModel.from_bundle(models.bundle.verify({signed['path']!r}, [{signed['pub']!r}]))
m.update({{}}, 0.0)
print(sorted(x for x in ('sklearn', 'skl2onnx', 'onnx', 'scipy') if x in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_a_bundle_trained_with_only_a_rate_above_4khz_is_accepted_for_a_sensor_at_that_rate(signed, tmp_path):
    """`model train --rate 8000` without --config computes the configuration's default bands (the top
    band stops at 2 kHz), so the sensor configured with `sample_rate: 8000` accepts its bundle."""
    from agent.config import parse_sensor
    from agent.hotswap import ModelManager, sensor_features
    from models.training.data import load

    data = load("sim:30", rate=8000.0, window=1024)
    assert "ax.band_1000_2000_g2" in data.names and not any("4000" in n for n in data.names)
    path = write_bundle(train(data, "pca", variants=("fp32",), version="r8k", repeat=5), str(tmp_path / "b8k"))
    bundle.sign(path, signed["key"])
    sensor = parse_sensor(name="s1", protocol="sim", sample_rate=8000, detector={"bundle": path})
    model, _ = ModelManager([signed["pub"]], _Log())._load("s1", path, sensor_features(sensor))
    assert model.version == "r8k"


def test_a_bundle_named_before_the_kind_prefix_still_loads(signed, capsys):
    """Bundles written before kinds were prefixed say `"name": "pca"`: they verify, load and run,
    named by their kind as new ones are (registry "pca" is another, on-device algorithm)."""
    old = _copy(signed, "old-name")
    manifest = json.loads((Path(old) / bundle.MANIFEST).read_text())
    assert manifest["name"] == "bundle:pca"  # what training writes now
    manifest["name"] = "pca"
    (Path(old) / bundle.MANIFEST).write_text(json.dumps(manifest, indent=2))
    bundle.sign(old, signed["key"])
    model = BundleModel.from_bundle(bundle.verify(old, [signed["pub"]]))
    assert model.name == "bundle:pca" and model.model == "bundle:pca@v1"
    typical = dict(zip(NAMES, manifest["scaler"]["mean"]))
    assert model.update(typical, 0.0)[1] and model.update({k: v + 50.0 for k, v in typical.items()}, 1.0)[0] > 0.9
    assert main(["model", "verify", old, "--pubkey", signed["pub"]]) == 0
    assert "OK: bundle:pca@v1" in capsys.readouterr().out


def test_bundle_kinds_cannot_collide_with_on_device_detectors():
    from models import registry

    assert all(name.isidentifier() for name in registry.DETECTORS)  # so never "bundle:<x>"
    assert all(k.startswith("bundle:") for k in bundle.KINDS) and not set(bundle.KINDS) & set(registry.DETECTORS)
    assert {bundle.kind(k.split(":", 1)[1]) for k in bundle.KINDS} == set(bundle.KINDS)
