"""Training on simulator and CWRU data: ONNX reproduces scikit-learn, compression is gated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.features import FeatureSpec
from models.onnx_runtime import OnnxDetector
from models.training import compress, data, detectors, export
from models.training.train import train

CWRU = Path("/work/shared/datasets/cwru")
if not CWRU.exists():
    CWRU = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cwru"
SPEC = FeatureSpec.for_channels(3200.0, ("ax", "ay", "az", "temp"))


@pytest.fixture(scope="module")
def sim():
    return data.load("sim:150", spec=SPEC, window=2048, hop=1024)


@pytest.fixture(scope="module")
def sim_faulty():
    return data.load("sim:20:outer-race:1", spec=SPEC, window=2048, hop=1024)


@pytest.mark.parametrize("detector", detectors.DETECTORS)
def test_sim_training_onnx_matches_sklearn_and_finds_a_bearing_fault(sim, sim_faulty, detector):
    result = train(sim, detector, faulty=sim_faulty, repeat=20)
    fp32 = result.fitted["fp32"]
    z = np.concatenate([result.holdout_z, result.faulty_z])
    onnx = OnnxDetector(result.models["fp32"], sim.names, [0.0] * len(sim.names), [1.0] * len(sim.names))
    np.testing.assert_allclose(onnx.score_batch(z), fp32.reference(z), rtol=1e-5, atol=1e-5)
    if detector == "iforest":  # the reference is scikit-learn's own score_samples
        np.testing.assert_allclose(onnx.score_batch(z), -fp32.estimator.score_samples(z), rtol=1e-5, atol=1e-5)
    rows = {m.variant: m for m in result.measured}
    assert rows["fp32"].auc > 0.95, rows["fp32"]
    assert rows[result.chosen].accepted
    assert set(rows) == ({"fp32", "pruned", "distilled"} | ({"int8"} if detector != "iforest" else set()))
    assert all(m.size_bytes > 0 and m.latency_us > 0 for m in result.measured)
    m = result.manifest
    assert m["model"]["variant"] == result.chosen and m["features"]["names"] == sim.names


def test_int8_quantization_shrinks_the_weights(sim):
    result = train(sim, "pca", variants=("fp32", "int8"), repeat=10)
    rows = {m.variant: m for m in result.measured}
    assert rows["int8"].size_bytes < rows["fp32"].size_bytes
    assert rows["int8"].rank_corr > 0.9


def test_quality_gate_rejects_a_degrading_variant(sim):
    result = train(sim, "pca", variants=("fp32",), repeat=10)
    f = len(sim.names)
    rng = np.random.default_rng(3)
    # A "compressed" model that lost what it learned: random weights (a collapsed int8 net looks so).
    broken = export.regressor([rng.normal(size=(f, 4)), rng.normal(size=(4, 1))],
                              [np.zeros(4), np.zeros(1)], "relu", exp_output=True)
    mean, scale = np.zeros(f), np.ones(f)
    measured = compress.measure({"fp32": result.models["fp32"], "int8": broken}, sim.names, mean, scale,
                                result.holdout_z, result.faulty_z, repeat=10)
    rows = {m.variant: m for m in measured}
    assert not rows["int8"].accepted and ("AUC" in rows["int8"].reason or "rank" in rows["int8"].reason)
    assert compress.select(measured).variant == "fp32"


def test_isolation_forest_compact_graph_equals_skl2onnx(sim):
    z = (sim.x - sim.x.mean(0)) / sim.x.std(0)
    fitted = detectors.fit_iforest(z[:200], n_estimators=20)
    ones, zeros = [1.0] * z.shape[1], [0.0] * z.shape[1]
    compact = OnnxDetector(fitted.onnx, sim.names, zeros, ones).score_batch(z[200:])
    slow = export.skl2onnx_isolation_forest(fitted.estimator, z.shape[1])
    from models.onnx_runtime import session

    out = session(slow).run(None, {"x": z[200:].astype(np.float32)})
    # skl2onnx outputs (label, decision_function = score_samples - offset_)
    decision = out[1].ravel().astype(np.float64)
    np.testing.assert_allclose(-(decision + fitted.estimator.offset_), compact, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not CWRU.exists(), reason="CWRU data set not available")
def test_cwru_normal_baseline_detects_seeded_bearing_faults():
    # Normal_0 was recorded at 48 kHz, the fault files at 12 kHz: decimate the baseline by 4.
    healthy = data.load(str(CWRU / "normal" / "Normal_0.mat"), rate=48000, decimate=4, columns=["DE", "FE"],
                        window=2048, hop=256)
    faulty = data.load(str(CWRU / "12k_DE" / "OR007@6_0.mat"), spec=healthy.spec, columns=["DE", "FE"],
                       window=2048, hop=1024)
    result = train(healthy, "pca", faulty=faulty, variants=("fp32", "int8"), repeat=10)
    rows = {m.variant: m for m in result.measured}
    assert rows["fp32"].auc > 0.99
    assert result.manifest["features"]["spec"]["rate"] == 12000.0


def test_cli_train_writes_a_signed_bundle_and_reports_every_variant(tmp_path, capsys):
    from agent.cli import main

    assert main(["model", "keygen", "--out", str(tmp_path / "k")]) == 0
    out = tmp_path / "b"
    assert main(["model", "train", "sim:90", "--out", str(out), "--detector", "autoencoder",
                 "--window", "2048", "--key", str(tmp_path / "k.key")]) == 0
    text = capsys.readouterr().out
    for variant in ("fp32", "int8", "pruned", "distilled", "rule:", "chosen:", "signed"):
        assert variant in text
    assert main(["model", "verify", str(out), "--pubkey", str(tmp_path / "k.pub")]) == 0
    assert main(["model", "train", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x")]) == 2
