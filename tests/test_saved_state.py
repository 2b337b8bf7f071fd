"""Learned baselines saved by an earlier release load unchanged: tests/cases/saved/<release>-<protocol>/
holds the sensor's configuration as written then (sensor.yaml) and the models/<sensor>.json that
`pdm-agent run` of that release saved after learning (commit 89d27d1: before the driver registry
moved the baseline key into each driver). A restart after an upgrade must not start learning again."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.config import parse_sensor
from agent.pipeline import SensorPipeline

CASES = sorted(p for p in (Path(__file__).parent / "cases" / "saved").iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_a_baseline_saved_by_an_earlier_release_is_restored(case):
    cfg = parse_sensor(yaml.safe_load((case / "sensor.yaml").read_text()))
    pipeline = SensorPipeline(device="gw", sensor_cfg=cfg, aggregate_interval=60, emit=lambda item: None)
    assert not pipeline.model.ready
    assert pipeline.load_state(str(case)) is True
    assert pipeline.model.ready and pipeline.model.learns


def test_a_baseline_of_another_register_map_is_not_restored(tmp_path):
    """The check that makes the test above meaningful: the same saved file with another preset
    (another register map, so other features) is refused and learned anew."""
    case = next(p for p in CASES if p.name.endswith("-modbus"))
    data = yaml.safe_load((case / "sensor.yaml").read_text())
    cfg = parse_sensor({**data, "preset": "wtvb01"})
    pipeline = SensorPipeline(device="gw", sensor_cfg=cfg, aggregate_interval=60, emit=lambda item: None)
    assert pipeline.load_state(str(case)) is False and not pipeline.model.ready
