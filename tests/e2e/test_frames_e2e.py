"""`pdm-agent run` reading `pdm-agent simulate --protocol frames` (binary frames) over a pty:
aggregates are published, and the status topic shows the frame counters and a healthy sensor."""

from __future__ import annotations

import json
import subprocess

from agentproc import assert_clean_exit, pdm_agent, stop, wait_for_link, write_config
from broker import Subscriber


def test_binary_frames_from_simulator_to_mqtt(broker, tmp_path):
    link = tmp_path / "ttyACM0"
    sim = pdm_agent("simulate", "--link", str(link), "--protocol", "frames", "--rate", "3200",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_link(sim, link)
    sensor = {"name": "motor3", "port": str(link), "protocol": "frames", "baudrate": 460800, "sample_rate": 3200,
              "channels": ["ax", "ay", "az", "temp"], "window": {"size": 2048, "hop": 1024},
              "detector": {"learn_seconds": 600}}
    config = write_config(tmp_path / "config.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sensor], interval=2)
    config.write_text(config.read_text().replace("status_interval_s: 5.0", "status_interval_s: 1.0"))
    sub = Subscriber(broker.host, broker.port, ["#"])
    agent = pdm_agent("run", "--config", str(config))
    try:
        msgs = sub.wait_for(lambda ms: sum(m.topic.endswith("/aggregate") for m in ms) >= 2, 25)
        agg = [json.loads(m.payload) for m in msgs if m.topic.endswith("/aggregate")][-1]
        f = agg["features"]
        assert agg["count"] >= 4
        assert 0 < f["ax.rms_g"]["mean"] < 1 and 20 < f["temp.mean_c"]["mean"] < 80

        def frames_status(ms):
            st = [json.loads(m.payload) for m in ms if m.topic.endswith("/status")]
            return [s["sensors"]["motor3"] for s in st if s.get("sensors", {}).get("motor3", {}).get("frames_ok")]

        sub.wait_for(lambda ms: bool(frames_status(ms)), 10)
        first = frames_status(sub.snapshot())[-1]
        # The simulator streams before the agent opens the port and drops what nobody reads; none of
        # that is lost by the agent (tests/e2e/test_frames_at_start.py), nor anything while it reads.
        sub.wait_for(lambda ms: frames_status(ms)[-1]["samples"] > first["samples"] + 3 * 3200, 20)
        s = frames_status(sub.snapshot())[-1]
        assert s["online"] and s["health"]["state"] == "ok"
        assert s["crc_errors"] == 0 and (first["seq_gaps"], first["frames_lost"]) == (0, 0)
        assert (s["seq_gaps"], s["frames_lost"]) == (first["seq_gaps"], first["frames_lost"])
        assert s["samples"] > 3200 and s["dropped_samples"] == 0
    finally:
        code = stop(agent)
        stop(sim)
        sub.close()
    assert_clean_exit(agent, code)
