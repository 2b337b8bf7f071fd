"""A bridged-broker outage loses nothing: agent -> site Mosquitto -> bridge -> central Mosquitto, as a
plant runs it (docs/fleet-deployment.md). The central broker is stopped while the agent raises alerts
(the bridge is cut; the agent's own link to the site broker stays up, so it is the site broker's
bridge queue that must hold them) and started again: every alert reaches the central subscriber, in
raised order, none twice; aggregates arrive without a gap.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from agentproc import raised_alerts, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Broker, Subscriber

FLAPPY = dict(debounce_n=1, debounce_m=1, hysteresis=0.0)  # every crossing is an event: many alerts


def bridge_to(central: Broker, prefix: str = "pdm") -> list[str]:
    """Site-broker lines for a Mosquitto bridge to `central` with the settings the deployment guide
    asks for: QoS 1 out, a persistent bridge session (cleansession false), a bounded queue."""
    return [
        "max_queued_messages 10000",  # per client, the bridge included: what an outage may hold
        "max_inflight_messages 20",
        "connection central",
        f"address {central.host}:{central.port}",
        f"topic {prefix}/# out 1",
        "cleansession false",
        "clientid site-1-bridge",
        "bridge_protocol_version mqttv311",
        "restart_timeout 1",  # tests: retry every second (production: `restart_timeout 5 60`)
        "notifications false",
    ]


def _ts(payload: bytes) -> float:
    return datetime.fromisoformat(json.loads(payload)["ts"].replace("Z", "+00:00")).timestamp()


def test_bridge_cut_while_alerts_are_raised_loses_nothing(tmp_path):
    (tmp_path / "central").mkdir()
    (tmp_path / "site").mkdir()
    central = Broker(tmp_path / "central", persistence=True)  # the watcher's session outlives a restart
    central.start()
    site = Broker(tmp_path / "site", extra=bridge_to(central))
    site.start()
    sub = Subscriber(central.host, central.port, ["pdm/#"], client_id="central-watcher")
    log = tmp_path / "agent.log"
    cfg = write_config(tmp_path / "c.yaml", broker=site, storage=tmp_path / "state", interval=1,
                       sensors=[sim_sensor("pump1", fault="outer-race", fault_at=12, **FLAPPY),
                                sim_sensor("fan2", fault="imbalance", fault_at=14, **FLAPPY)])
    agent = start_agent(cfg, log)
    try:
        sub.wait_for(lambda ms: any(m.topic == "pdm/e2e-gw/pump1/aggregate" for m in ms), 30)
        central.stop()  # the bridge is cut; the agent still reaches its site broker
        wait_until(lambda: len(raised_alerts(log)) >= 3, 40, what="alerts raised while the bridge is cut")
        time.sleep(2)
        during = raised_alerts(log)
        central.start()
        alerts = lambda: [json.loads(m.payload)["id"] for m in sub.snapshot()  # noqa: E731
                          if m.topic.endswith("/alert")]
        wait_until(lambda: set(during) <= set(alerts()), 30, what="every alert delivered after the cut")
        time.sleep(1)  # anything doubled would arrive right behind
        got = alerts()
        raised = raised_alerts(log)
    finally:
        code = stop(agent)
        sub.close()
        site.stop()
        central.stop()
    assert code == 0
    assert len(got) == len(set(got)), "an alert arrived twice"
    assert set(during) <= set(got) and set(got) <= set(raised)
    for sensor in ("pump1", "fan2"):  # in raised order per sensor (the contract's order)
        mine = {json.loads(m.payload)["id"] for m in sub.snapshot() if m.topic == f"pdm/e2e-gw/{sensor}/alert"}
        assert [i for i in got if i in mine] == [i for i in raised if i in mine][:len(mine)]
    aggregates = [_ts(m.payload) for m in sub.snapshot() if m.topic == "pdm/e2e-gw/pump1/aggregate"]
    steps = [b - a for a, b in zip(aggregates, aggregates[1:])]
    assert len(aggregates) > 10 and all(s == 1 for s in steps), f"aggregates lost, doubled or reordered: {steps}"
