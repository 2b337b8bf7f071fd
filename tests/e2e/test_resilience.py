"""Nothing lost: broker outages, kill -9, outbox cap. Real Mosquitto, real agent processes.

Alerts are counted twice: as the agent raised them (its JSON log names every alert id) and as
a subscriber received them. Every raised id must arrive, first deliveries in raised order.
"""

from __future__ import annotations

import json
import signal
import time

from agentproc import log_events, raised_alerts, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Subscriber

FLAPPY = dict(debounce_n=1, debounce_m=1, hysteresis=0.0)  # every crossing is an event: many alerts


def alert_ids(sub: Subscriber, sensor: str = "pump1") -> list[str]:
    seen, out = set(), []
    for m in sub.snapshot():
        if m.topic.endswith(f"/{sensor}/alert"):
            i = json.loads(m.payload)["id"]
            if i not in seen:
                seen.add(i)
                out.append(i)
    return out


def statuses(sub: Subscriber) -> list[dict]:
    return [json.loads(m.payload) for m in sub.snapshot() if m.topic.endswith("/status")]


def aggregate_times(sub: Subscriber, sensor: str) -> list[float]:
    from datetime import datetime

    return sorted({datetime.fromisoformat(json.loads(m.payload)["ts"].replace("Z", "+00:00")).timestamp()
                   for m in sub.snapshot() if m.topic.endswith(f"/{sensor}/aggregate")})


def test_broker_outage_delivers_every_alert_in_order(persistent_broker, tmp_path):
    broker = persistent_broker
    log = tmp_path / "agent.log"
    sensors = [sim_sensor("pump1", fault="outer-race", fault_at=14, **FLAPPY),
               sim_sensor("fan2", fault="imbalance", fault_at=16, **FLAPPY)]
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=1, sensors=sensors)
    sub = Subscriber(broker.host, broker.port, ["pdm/#"], client_id="outage-watcher")
    agent = start_agent(cfg, log)
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/aggregate") for m in ms), 20)
        broker.stop()
        outage_start = time.monotonic()
        wait_until(lambda: len(raised_alerts(log)) >= 3, 40, what="alerts raised during the outage")
        time.sleep(3)  # let the faults keep producing events while the broker is away
        during = raised_alerts(log)
        outage_s = time.monotonic() - outage_start
        broker.start()
        ids = lambda: set(alert_ids(sub, "pump1")) | set(alert_ids(sub, "fan2"))  # noqa: E731
        wait_until(lambda: set(during) <= ids(), 30, what="every outage alert delivered")
        for sensor in ("pump1", "fan2"):  # first deliveries in raised order, per sensor
            delivered = [i for i in alert_ids(sub, sensor) if i in during]
            assert delivered == [i for i in during if i in delivered], f"{sensor}: out of order"
        # Aggregates buffered through the outage arrive too: one per second, no gap.
        time.sleep(3)
        times = aggregate_times(sub, "pump1")
        gaps = [b - a for a, b in zip(times, times[1:]) if b - a > 1.0]
        assert not gaps and times[-1] - times[0] > outage_s, (gaps, len(times))
        print(f"\nbroker outage {outage_s:.0f} s: alerts raised during it {len(during)}, delivered "
              f"{len(set(during) & ids())}; pump1 aggregates {len(times)} with no gap")
        assert agent.poll() is None
    finally:
        assert stop(agent) == 0
        sub.close()


def test_kill9_with_pending_alerts_then_restart_delivers_them(broker, tmp_path):
    log = tmp_path / "agent.log"
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=1,
                       sensors=[sim_sensor("pump1", fault="imbalance", fault_at=12, **FLAPPY)])
    broker.stop()  # everything the first run raises stays pending in the outbox
    agent = start_agent(cfg, log)
    try:
        wait_until(lambda: len(raised_alerts(log)) >= 2, 45, what="alerts raised")
        time.sleep(1)
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    pending = raised_alerts(log)
    broker.start()
    sub = Subscriber(broker.host, broker.port, ["pdm/#"])
    log2 = tmp_path / "agent2.log"
    agent = start_agent(cfg, log2)
    try:
        wait_until(lambda: set(pending) <= set(alert_ids(sub)), 30, what="pending alerts delivered after restart")
        delivered = alert_ids(sub)
        assert [i for i in delivered if i in pending] == pending
        print(f"\nkill -9 with {len(pending)} alerts pending: delivered after restart "
              f"{len([i for i in delivered if i in pending])}")
    finally:
        assert stop(agent) == 0
        sub.close()


def test_outbox_cap_drops_aggregates_never_alerts(broker, tmp_path):
    log = tmp_path / "agent.log"
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=1,
                       sensors=[sim_sensor("pump1", fault="outer-race", fault_at=12, **FLAPPY)])
    text = cfg.read_text().replace("storage:\n", "storage:\n  max_outbox_mb: 0.02\n")
    cfg.write_text(text)
    broker.stop()
    agent = start_agent(cfg, log)
    try:
        wait_until(lambda: len(raised_alerts(log)) >= 1, 45, what="alerts raised")
        wait_until(lambda: any("outbox full" in str(e.get("event")) for e in log_events(log)), 20,
                   what="the agent saying it dropped aggregates")
        time.sleep(2)
        raised = raised_alerts(log)
        broker.start()
        sub = Subscriber(broker.host, broker.port, ["pdm/#"])
        wait_until(lambda: set(raised) <= set(alert_ids(sub)), 30, what="every alert delivered")
        status = wait_until(lambda: [s for s in statuses(sub) if s["state"] == "online"], 40,
                            what="status with health")[-1]
        dropped = status["outbox"]["dropped"]
        assert dropped["alert"] == 0 and dropped["aggregate"] > 0, dropped
        print(f"\noutbox cap 20 KB: alerts raised {len(raised)}, delivered {len(set(raised) & set(alert_ids(sub)))}, "
              f"aggregates dropped {dropped['aggregate']}")
        sub.close()
    finally:
        assert stop(agent) == 0
