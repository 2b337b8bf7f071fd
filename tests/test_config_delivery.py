"""`config check` refuses settings that defeat delivery or alerting, each with its key and line.

Run through the real CLI (`pdm-agent config check`), as an operator would.
"""

from __future__ import annotations

import pytest
from agentproc import pdm_agent

BASE = """device: {{id: gw1}}
mqtt:
  host: 127.0.0.1
  {mqtt}
storage: {{dir: {state}}}
sensors:
  - name: pump1
    protocol: sim
    {sensor}
aggregates:
  {agg}
"""

CASES = [  # (mqtt line, sensor line, aggregates line, key in the error, words in the error)
    ('topic_prefix: "$SYS/pdm"', "", "interval: 60", "mqtt.topic_prefix", "must not start with '$'"),
    ('topic_prefix: "$pdm"', "", "interval: 60", "mqtt.topic_prefix", "reserved for the broker"),
    ('topic_prefix: "pdm\\0x"', "", "interval: 60", "mqtt.topic_prefix", "U+0000"),
    ('topic_prefix: "pdm\\tx"', "", "interval: 60", "mqtt.topic_prefix", "control characters"),
    ("topic_prefix: pdm/#", "", "interval: 60", "mqtt.topic_prefix", "'+' or '#'"),
    ("status_interval_s: .inf", "", "interval: 60", "mqtt.status_interval_s", "finite"),
    ("reconnect_max_s: .inf", "", "interval: 60", "mqtt.reconnect_max_s", "finite"),
    ("reconnect_max_s: 86400", "", "interval: 60", "mqtt.reconnect_max_s", "3600"),
    ("client_id: 'a+b'", "", "interval: 60", "mqtt.client_id", "'+' or '#'"),
    (f"client_id: {'x' * 300}", "", "interval: 60", "mqtt.client_id", "at most 128"),
    ('port: 1883', "", "interval: 60", None, None),  # the control: a sane file passes
    ("port: 1883", "detector: {learn_seconds: .inf}", "interval: 60", "sensors[0].detector.learn_seconds", "finite"),
    ("port: 1883", "detector: {learn_seconds: 1e400}", "interval: 60", "sensors[0].detector.learn_seconds", "finite"),
    ("port: 1883", "detector: {learn_seconds: 31536000}", "interval: 60",
     "sensors[0].detector.learn_seconds", "2592000"),
    ("port: 1883", "detector: {learn_seconds: .nan}", "interval: 60", "sensors[0].detector.learn_seconds", "finite"),
    ("port: 1883", "", "interval: 1e-6", "aggregates.interval", "greater than or equal to 1"),
    ("port: 1883", "", "interval: .nan", "aggregates.interval", "finite"),
]


@pytest.mark.parametrize("mqtt,sensor,agg,key,words", CASES)
def test_config_check_refuses_undeliverable_settings(tmp_path, mqtt, sensor, agg, key, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE.format(mqtt=mqtt, sensor=sensor, agg=agg, state=tmp_path / "state"))
    proc = pdm_agent("config", "check", "--config", str(cfg))
    out = proc.communicate(timeout=60)[0].decode()
    assert "Traceback" not in out
    if key is None:
        assert proc.returncode == 0, out
        return
    assert proc.returncode != 0, out
    line = 4 if key.startswith("mqtt.") else 9 if key.startswith("sensors") else 11  # where BASE puts it
    hits = [ln for ln in out.splitlines() if ln.lstrip().startswith(key + ":")]
    assert hits, out
    assert words in hits[0], out
    assert f"c.yaml:{line})" in hits[0], out


def test_discovery_prefix_is_checked_too(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE.format(mqtt="port: 1883", sensor="", agg="interval: 60", state=tmp_path / "s")
                   + 'homeassistant: {enabled: true, discovery_prefix: "$ha"}\n')
    proc = pdm_agent("config", "check", "--config", str(cfg))
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0 and "homeassistant.discovery_prefix: must not start with '$'" in out, out
