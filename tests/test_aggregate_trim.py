"""Rows kept small by config: `aggregates.features` publishes only the features that match."""

from __future__ import annotations

from agent.aggregates import Aggregator
from agent.config import parse_config
from agent.records import FeatureVector


def test_aggregates_features_trims_the_payload():
    cfg = parse_config("device: {id: g}\nsensors: [{name: p, protocol: sim}]\n"
                       "aggregates: {interval: 10, features: ['*.rms_g', temp.mean_c]}\n")
    assert cfg.aggregates.features == ["*.rms_g", "temp.mean_c"]
    full, trimmed = Aggregator("g", "p", 10), Aggregator("g", "p", 10)
    trimmed.features = tuple(cfg.aggregates.features)
    values = {"ax.rms_g": 1.0, "ax.kurtosis": 3.0, "ay.rms_g": 2.0, "temp.mean_c": 40.0, "temp.slope": 0.1}
    for agg in (full, trimmed):
        agg.add(FeatureVector("p", 1.0, values), 0.2)
    (a,), (b,) = full.flush(20.0), trimmed.flush(20.0)  # the one interval that ended
    assert set(a.features) == {*values, "score"}
    assert set(b.features) == {"ax.rms_g", "ay.rms_g", "temp.mean_c", "score"}
    assert len(str(b.payload())) < len(str(a.payload()))


def test_aggregates_features_must_not_be_empty():
    import pytest

    from agent.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse_config("device: {id: g}\nsensors: [{name: p, protocol: sim}]\naggregates: {features: []}\n", "c.yaml")
    assert "aggregates.features" in str(exc.value) and "c.yaml:3" in str(exc.value)
