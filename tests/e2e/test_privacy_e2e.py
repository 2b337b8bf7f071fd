"""`aggregates.privacy` end to end: a real `pdm-agent run` with contract keys and the default
aggregate interval (60 s) publishes noised aggregates; a real Mosquitto subscriber receives them
with their `privacy` block, only bounded features (and the score), every value within its bounds."""

from __future__ import annotations

import json

import yaml
from agentproc import log_events, start_agent, stop, wait_until, write_config
from broker import Subscriber

BOUNDS = {"*.rms_g": [0, 2], "temp.mean_c": [0, 120]}


def test_noised_aggregates_reach_the_subscriber_with_their_privacy_block(broker, tmp_path):
    sensor = {"name": "pump1", "protocol": "sim"}  # contract keys, product defaults
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state", sensors=[sensor])
    cfg = yaml.safe_load(config.read_text())
    cfg["aggregates"] = {"privacy": {"epsilon": 1.0, "bounds": BOUNDS}}  # interval: the default 60 s
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)

    def aggregates():
        return [json.loads(m.payload) for m in sub.snapshot() if m.topic == "pdm/e2e-gw/pump1/aggregate"]

    try:
        wait_until(lambda: [a for a in aggregates() if a["count"] > 0], 150, what="a noised aggregate with windows")
    finally:
        code = stop(agent)
        sub.close()
    assert code == 0
    for a in aggregates():
        assert a["interval_s"] == 60
        p = a["privacy"]
        assert p["mechanism"] == "laplace" and p["epsilon"] == 1.0 and p["unit"] == "window"
        if a["count"] == 0:
            assert a["features"] == {}
            continue
        assert set(a["features"]) == {"ax.rms_g", "ay.rms_g", "az.rms_g", "temp.mean_c", "score"}
        assert p["bounds"] == {"ax.rms_g": [0, 2], "ay.rms_g": [0, 2], "az.rms_g": [0, 2], "temp.mean_c": [0, 120],
                               "score": [0, 1]}
        for name, stats in a["features"].items():
            low, high = p["bounds"][name]
            assert set(stats) == {"mean", "min", "max"}
            assert all(low <= v <= high for v in stats.values()), (name, stats)
    said = [e for e in log_events(log) if e.get("event") == "aggregates.privacy: features without bounds are not published"]
    assert said and said[0]["count"] == 29 - 4, "the unpublished features must be said"
    assert any(e.get("event") == "aggregates carry differential-privacy noise" for e in log_events(log))
