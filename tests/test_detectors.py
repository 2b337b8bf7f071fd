"""One contract test that every registered detector must pass (models/base.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models import registry
from models.base import Detector, ScoringModel


def healthy_vectors(n: int, seed: int) -> list[dict[str, float]]:
    """Feature vectors shaped like a healthy machine's: correlated, positive energies, a temperature."""
    rng = np.random.default_rng(seed)
    load = rng.normal(0.0, 1.0, n)
    rms = 0.05 * np.exp(0.1 * load + 0.05 * rng.normal(size=n))
    return [
        {
            "ax.rms_g": float(r),
            "ax.kurtosis": float(3.0 + 0.2 * rng.normal()),
            "ax.skewness": float(0.05 * rng.normal()),
            "ax.band_10_100_g2": float(0.6 * r**2 * np.exp(0.05 * rng.normal())),
            "ax.velocity_rms_mm_s": float(40.0 * r * np.exp(0.05 * rng.normal())),
            "temp.mean_c": float(40.0 + 0.5 * l + 0.05 * rng.normal()),
            "temp.slope_c_per_min": float(0.02 * rng.normal()),
        }
        for r, l in zip(rms, load)
    ]


def dump(det: Detector) -> str:
    return json.dumps(det.state(), sort_keys=True)


@pytest.mark.parametrize("name", sorted(registry.DETECTORS))
def test_detector_contract(name: str) -> None:
    det = registry.create(name)
    assert isinstance(det, Detector) and det.name == name and det.version
    baseline, fresh = healthy_vectors(300, seed=1), healthy_vectors(50, seed=2)
    assert math.isfinite(det.score(fresh[0])) and det.score(fresh[0]) >= 0.0  # before any learning

    for x in baseline:
        det.learn(x)
    before = dump(det)
    scores = np.array([det.score(x) for x in fresh])
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0.0)

    faulty = dict(fresh[0], **{"ax.rms_g": 0.5, "ax.kurtosis": 12.0, "ax.band_10_100_g2": 0.2})
    assert det.score(faulty) > scores.max()

    explained = det.explain(faulty)
    assert list(explained) == list(faulty)
    assert all(math.isfinite(v) and v >= 0.0 for v in explained.values())
    assert max(explained, key=explained.get) in ("ax.rms_g", "ax.kurtosis", "ax.band_10_100_g2")
    partial = {"ax.rms_g": 0.05, "new.feature": 1.0}  # missing and unknown keys are tolerated
    assert list(det.explain(partial)) == list(partial) and det.score(partial) >= 0.0

    absurd = {k: 1e300 for k in faulty}
    assert math.isfinite(det.score(absurd)) and det.score(absurd) >= 0.0
    assert dump(det) == before, "score/explain must not change the model"

    restored = type(det).from_state(json.loads(json.dumps(det.state())))
    assert registry.from_state(det.state()).name == name
    assert [restored.score(x) for x in fresh] == scores.tolist()
    det.learn(fresh[1])
    restored.learn(fresh[1])
    assert restored.score(faulty) == det.score(faulty)

    # The declared capabilities (models/base.py), and observe: it advances input context only.
    assert isinstance(det.contextual, bool) and isinstance(det.adaptive, bool) and int(det.warmup) >= 0
    if det.adaptive:
        det.half_life = det.half_life  # a settable attribute, in learned vectors
    det.set_cadence(1.0)
    restored.set_cadence(1.0)
    before = dump(det)
    for x in fresh[2:12]:
        assert det.observe(x) is None
        restored.observe(x)
    if not det.contextual:
        assert dump(det) == before, "observe must not change a detector without input context"
    assert restored.score(faulty) == det.score(faulty) and math.isfinite(det.score(faulty))


def test_registry_errors_name_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="valid: auto, gaussian"):
        registry.create("mahalanobis")
    with pytest.raises(ValueError, match="has no parameter 'depth'.*valid: .*height"):
        registry.create("hst", depth=3)
    assert registry.create("auto").name == registry.DEFAULT
    assert registry.create("gaussian", shrinkage=0.3).shrinkage == 0.3


def _bundle_model(tmp_path):
    from models import bundle
    from models.onnx_runtime import BundleModel
    from models.training.data import Dataset
    from models.training.train import train, write_bundle

    names = list(healthy_vectors(1, 0)[0])
    x = np.array([[v[k] for k in names] for v in healthy_vectors(300, seed=3)])
    path = write_bundle(train(Dataset(x, names, None, "test"), "pca", variants=("fp32",), version="c1", repeat=5),
                        str(tmp_path / "b"))
    key, pub = bundle.keygen(str(tmp_path / "k"))
    bundle.sign(path, key)
    return BundleModel.from_bundle(bundle.verify(path, [pub]))


def _streaming(name):
    from models.streaming import StreamingModel

    return lambda tmp_path: StreamingModel(registry.create(name), learn_seconds=100.0, adapt_half_life_s=3600.0)


def _guarded(tmp_path):
    from agent.hotswap import Guarded

    return Guarded(_bundle_model(tmp_path), _streaming("gaussian")(tmp_path), lambda guard, why: None)


SCORING = {**{f"streaming:{n}": _streaming(n) for n in sorted(registry.DETECTORS)},
           "bundle": _bundle_model, "guarded": _guarded}


@pytest.mark.parametrize("kind", sorted(SCORING))
def test_scoring_model_contract(kind, tmp_path) -> None:
    """Every model source the pipeline drives (models/base.ScoringModel), detectors with input context included."""
    model = SCORING[kind](tmp_path)
    assert isinstance(model, ScoringModel) and model.name and model.version
    assert isinstance(model.learns, bool) and model.learns == (kind not in ("bundle", "guarded"))  # guarded: the bundle it runs
    rows = healthy_vectors(400, seed=4)
    ready, events = [], []
    for i, x in enumerate(rows):
        score, ok, reason = model.update(x, ts=1000.0 + i, exclude="implausible" if i == 5 else None)
        assert 0.0 <= score <= 1.0 and isinstance(ok, bool) and ok == model.ready
        assert len(reason) <= 3 and all(f in x and math.isfinite(c) for f, _, c in reason)
        ready.append(ok)
        events += model.take_events()
    assert ready[-1], "ready after learning"
    assert model.take_events() == [], "taken events are forgotten"
    baseline = model.baseline()
    if kind in ("bundle", "guarded"):  # no baseline learned on the device: nothing to report or reset
        assert baseline is None and events == []
    else:
        assert baseline["state"] == "ready" and baseline["excluded"].get("implausible") == 1
        assert [k for k, _ in events] == ["learned"] and events[0][1]["learned_at"] == baseline["learned_at"]
        json.dumps(baseline)
    faulty = dict(rows[0], **{"ax.rms_g": 0.5, "ax.kurtosis": 12.0, "ax.band_10_100_g2": 0.2})
    score, ok, reason = model.update(faulty, ts=2000.0)
    assert 0.0 <= score <= 1.0 and ok and reason and reason[0][0] in faulty
    odd = dict(rows[1], **{"ax.rms_g": math.nan})
    assert 0.0 <= model.update(odd, ts=2100.0)[0] <= 1.0  # a non-finite feature is not an error
    json.dumps(model.state())
