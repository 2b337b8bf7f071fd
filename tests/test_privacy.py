"""agent/privacy.py: the noise OpenDP adds has the scale the sensitivity and epsilon call for, every
released value stays within its declared bounds, and every aggregate says how it was noised.

OpenDP's samplers take no seed (they draw from the OS's secure source), so the scale checks are
statistical: many draws, tolerances of ~4 standard errors of the estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.aggregates import Aggregator
from agent.privacy import PrivacyConfig, Privatizer
from agent.records import FeatureVector

N_DRAWS = 1500


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, event, **kw):
        self.lines.append((event, kw))


def _draws(priv, data, stat: str, feature: str = "f") -> np.ndarray:
    names = ["f", "score"]
    return np.array([priv.release("s", names, data, lambda n: True)[0][feature][stat] for _ in range(N_DRAWS)])


def test_laplace_scale_is_sensitivity_times_statistics_over_epsilon():
    # 2 features (f and the score) x mean/min/max = 6 statistics released together: b = 6 / epsilon
    # per unit of sensitivity; mean sensitivity (U - L) / n, max sensitivity U - L.
    n, width = 50, 10.0
    data = np.column_stack([np.full(n, 5.0), np.full(n, 0.5)])
    for eps, stat, sensitivity in ((6.0, "mean", width / n), (100.0, "max", width)):
        priv = Privatizer(PrivacyConfig(epsilon=eps, bounds={"f": (0, 10)}))
        assert priv.scale(6) == pytest.approx(6 / eps, rel=1e-6)
        b = 6 / eps * sensitivity  # 0.2 and 0.6: well inside the bounds (5 +- 5), clamping hardly matters
        noise = _draws(priv, data, stat) - 5.0
        # Laplace(b): E|X| = b, median |X| = b ln 2, mean 0.
        assert np.mean(np.abs(noise)) == pytest.approx(b, rel=0.1)
        assert np.median(np.abs(noise)) == pytest.approx(b * math.log(2), rel=0.15)
        assert abs(np.mean(noise)) < 5 * b * math.sqrt(2) / math.sqrt(N_DRAWS)


def test_gaussian_scale_matches_opendp_accounting_and_the_classical_bound():
    n, width, eps, delta = 1000, 4.0, 1.0, 1e-6
    priv = Privatizer(PrivacyConfig(epsilon=eps, mechanism="gaussian", delta=delta, bounds={"f": (0, 4)}))
    sigma_unit = priv.scale(6)  # L2 sensitivity sqrt(6) of the 6 normalised statistics
    classical = math.sqrt(2 * math.log(1.25 / delta)) * math.sqrt(6) / eps  # Dwork & Roth Thm A.1 (eps <= 1)
    assert 0.5 * classical < sigma_unit <= classical  # OpenDP's zCDP accounting is tighter, never looser
    data = np.column_stack([np.full(n, 2.0), np.full(n, 0.5)])
    noise = _draws(priv, data, "mean") - 2.0
    sigma = sigma_unit * width / n
    assert 8 * sigma < 2.0, "test set-up: the noise must stay inside the bounds"
    assert np.std(noise) == pytest.approx(sigma, rel=0.1)


def test_values_are_clipped_and_released_within_bounds_with_the_privacy_block():
    log = _Log()
    priv = Privatizer(PrivacyConfig(epsilon=0.5, bounds={"*.rms_g": (0, 2), "temp.mean_c": (0, 120)}), log)
    rng = np.random.default_rng(1)
    names = ["ax.rms_g", "ax.kurtosis", "temp.mean_c", "score"]
    data = np.column_stack([rng.uniform(-5, 9, 30), rng.normal(3, 1, 30), rng.normal(40, 1, 30),
                            rng.uniform(0, 1, 30)])
    data[3, 0] = np.nan
    for _ in range(200):
        features, block = priv.release("pump1", names, data, lambda n: True)
        assert set(features) == {"ax.rms_g", "temp.mean_c", "score"}, "unbounded ax.kurtosis published"
        for name, stats in features.items():
            low, high = block["bounds"][name]
            assert all(low <= v <= high for v in stats.values()), (name, stats)
    assert block["mechanism"] == "laplace" and block["epsilon"] == 0.5 and "delta" not in block
    assert block["bounds"] == {"ax.rms_g": [0.0, 2.0], "temp.mean_c": [0.0, 120.0], "score": [0.0, 1.0]}
    assert block["unit"] == "window" and block["library"].startswith("opendp ")
    assert [kw["features"] for e, kw in log.lines] == ["ax.kurtosis"], "the unpublished feature is said once"


def test_aggregator_publishes_noised_aggregates_and_empty_intervals_with_the_block():
    agg = Aggregator("gw", "pump1", interval=10)
    agg.privacy = Privatizer(PrivacyConfig(epsilon=1.0, mechanism="gaussian", delta=1e-6,
                                           bounds={"ax.rms_g": (0, 4)}))
    agg.add(FeatureVector("pump1", 1.0, {"ax.rms_g": 1.0, "ax.peak_g": 3.0}), 0.2)
    agg.add(FeatureVector("pump1", 2.0, {"ax.rms_g": 1.5, "ax.peak_g": 3.0}), 0.2)
    [a] = agg.add(FeatureVector("pump1", 12.0, {"ax.rms_g": 1.0, "ax.peak_g": 3.0}), 0.1)
    payload = a.payload()
    assert payload["count"] == 2 and set(payload["features"]) == {"ax.rms_g", "score"}
    assert payload["privacy"]["mechanism"] == "gaussian" and payload["privacy"]["delta"] == 1e-6
    out = agg.flush(31.5)  # closes [10, 20) with one window and [20, 30) with none
    assert [x.count for x in out] == [1, 0]
    empty = out[1]
    assert empty.count == 0 and empty.features == {} and empty.payload()["privacy"]["bounds"] == {}


def test_exact_aggregates_carry_no_privacy_block():
    agg = Aggregator("gw", "pump1", interval=10)
    agg.add(FeatureVector("pump1", 1.0, {"ax.rms_g": 1.0}), 0.2)
    [a] = agg.add(FeatureVector("pump1", 12.0, {"ax.rms_g": 1.0}), 0.1)
    assert "privacy" not in a.payload() and a.features["ax.rms_g"]["mean"] == 1.0


def test_config_check_names_the_features_privacy_will_not_publish():
    from agent.config import parse_config
    from agent.config_warnings import config_warnings

    text = ("device: {id: gw}\nsensors:\n  - {name: p1, protocol: sim}\naggregates:\n  features: ['*.rms_g', "
            "'temp.*']\n  privacy:\n    epsilon: 1\n    bounds: {'*.rms_g': [0, 0.5]}\n")
    [warning] = config_warnings(parse_config(text), text, "c.yaml")
    assert warning == ("aggregates.privacy.bounds: 2 of sensor p1's features have no bounds and are not published: "
                       "temp.mean_c, temp.slope_c_per_min (c.yaml:8)")


def test_privacy_without_the_library_is_refused_with_the_install_command(monkeypatch):
    from agent import privacy
    from agent.config import ConfigError, parse_config

    monkeypatch.setattr(privacy.importlib.util, "find_spec", lambda name: None)
    text = ("device: {id: gw}\nsensors:\n  - {name: p1, protocol: sim}\naggregates:\n  privacy:\n    epsilon: 1\n"
            "    bounds: {'*.rms_g': [0, 0.5]}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert "aggregates.privacy: needs the OpenDP library, which is not installed: pip install 'pdm-agent[privacy]'" \
        in str(info.value)


def test_config_check_says_a_bundle_named_directly_stays_unencrypted(tmp_path):
    from agent.config import parse_config
    from agent.config_warnings import config_warnings

    state = tmp_path / "state"
    text = (f"device: {{id: gw}}\nstorage: {{dir: {state}, encrypt: true}}\nmodels: {{trusted_keys: [k.pub]}}\n"
            f"sensors:\n  - {{name: p1, protocol: sim, detector: {{bundle: /opt/b1}}}}\n"
            f"  - {{name: p2, protocol: sim, detector: {{bundle: {state}/bundles/p2}}}}\n")
    assert config_warnings(parse_config(text), text, "c.yaml") == [
        "sensors[0].detector.bundle: /opt/b1 is read as it is and stays unencrypted (storage.encrypt covers "
        "installed bundles: pdm-agent model install /opt/b1 --sensor p1) (c.yaml:5)"]
