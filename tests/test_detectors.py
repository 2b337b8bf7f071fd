"""One contract test that every registered detector must pass (models/base.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models import registry
from models.base import Detector


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


def test_registry_errors_name_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="valid: auto, gaussian"):
        registry.create("mahalanobis")
    with pytest.raises(ValueError, match="has no parameter 'depth'.*valid: .*height"):
        registry.create("hst", depth=3)
    assert registry.create("auto").name == registry.DEFAULT
    assert registry.create("gaussian", shrinkage=0.3).shrinkage == 0.3
