"""ISO 10816-3 zones: a physics check that alerts even while the learned baseline is learning."""

from __future__ import annotations

from agent.config import parse_config
from agent.iso10816 import IsoConfig, IsoZoneCheck, zone
from agent.pipeline import SensorPipeline
from agent.records import Alert, FeatureVector

CFG = """
device: {id: gw}
sensors:
  - name: pump1
    port: /dev/null
    protocol: modbus
    preset: qm30vt2
    detector: {learn_seconds: 3600}
    %s
"""


def _pipeline(extra: str = ""):
    sensor = parse_config(CFG % extra).sensors[0]
    out: list = []
    return SensorPipeline(device="gw", sensor_cfg=sensor, aggregate_interval=60, emit=out.append), out


def _vector(ts: float, z: float, x: float = 0.5) -> FeatureVector:
    return FeatureVector("pump1", ts, {"z.velocity_rms_mm_s": z, "x.velocity_rms_mm_s": x, "temp.mean_c": 35.0})


def test_zone_boundaries_group2_rigid():
    b = (1.4, 2.8, 4.5)
    assert [zone(v, b) for v in (0.0, 1.39, 1.4, 2.79, 2.8, 4.49, 4.5)] == list("AABBCCD")


def test_zone_c_raises_an_iso_alert_while_the_model_is_still_learning():
    pipeline, out = _pipeline()
    for t in range(5):
        pipeline.process(_vector(1000.0 + t, 1.0))  # a poll enters at handle(): no windowing
    assert not pipeline.model.ready and not [a for a in out if isinstance(a, Alert)]
    pipeline.process(_vector(1005.0, 3.5))
    pipeline.process(_vector(1006.0, 3.6))
    alerts = [a for a in out if isinstance(a, Alert)]
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.kind, a.level, a.threshold, a.model) == ("iso10816", "warning", 2.8, "iso10816-3@group2-rigid")
    feature, value, _ = a.reason[0]
    assert "ISO 10816-3 zone C" in feature and feature.startswith("z.velocity_rms_mm_s") and value == 3.6
    assert a.payload()["kind"] == "iso10816"


def test_worst_axis_counts_and_zone_d_is_an_alarm_and_clearing_needs_hysteresis():
    check = IsoZoneCheck(IsoConfig(debounce_n=1), device="gw", sensor="pump1")
    levels = [(e.level if e else None) for e in (check.update(_vector(t, 0.5, v)) for t, v in
                                                 enumerate([5.0, 4.2, 2.7, 2.5, 2.0]))]
    # 4.2 >= 4.5*0.9 keeps the alarm; 2.7 >= 2.8*0.9 keeps the warning; 2.5 clears.
    assert levels == ["alarm", None, "warning", "clear", None]


def test_machine_class_and_custom_boundaries_from_config():
    pipeline, out = _pipeline("iso10816: {machine_class: group1-flexible, debounce_n: 1}")
    pipeline.process(_vector(1.0, 5.0))  # zone B for a large machine on a flexible foundation
    assert not [a for a in out if isinstance(a, Alert)]
    pipeline, out = _pipeline("iso10816: {boundaries: [1.0, 2.0, 3.0], debounce_n: 1}")
    pipeline.process(_vector(1.0, 2.5))
    assert [a.level for a in out if isinstance(a, Alert)] == ["warning"]
    pipeline, out = _pipeline("iso10816: {enabled: false}")
    pipeline.process(_vector(1.0, 9.0))
    assert not [a for a in out if isinstance(a, Alert)]
