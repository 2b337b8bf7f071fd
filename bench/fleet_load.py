"""Fleet load: N agents on one Mosquitto, and one agent behind a site broker bridged to a central one.

    nice -n 10 .venv/bin/python bench/fleet_load.py --agents 50 --seconds 120     # ~5 min
    nice -n 10 .venv/bin/python bench/fleet_load.py --only bridge --cut 30         # ~2 min
    nice -n 10 .venv/bin/python bench/fleet_load.py --only bridge --cleansession true   # the wrong setting

1. **Fleet.** One Mosquitto; two MQTT 5 consumers in one shared-subscription group
   (`$share/ops/pdm/+/+/alert`) split the alert stream; an MQTT 3.1.1 monitor on `pdm/#` counts
   messages/s and bytes. The broker's RSS and CPU (utime + stime from /proc, 100 % = one core) are
   measured first with the consumers only, then with N `pdm-agent run` processes (distinct
   `device.id`, one `protocol: sim` sensor each at a low rate, 1 s windows, the product's MQTT
   defaults, alert settings that flap so each agent raises alerts after its fault starts);
   per-agent figures are (with - without) / N. Alert latency = consumer receive time - the alert's
   `ts` (the end of the window that decided it; same machine, same clock). Lost alerts per agent =
   ids the agent logged as raised that no consumer received; doubled = ids received twice.
2. **Bridge.** agent -> site Mosquitto -> bridge (`cleansession false`, QoS 1, queue limits) ->
   central Mosquitto -> a persistent subscriber. Once the agent's fault raises alerts, the central
   broker is stopped for `--cut` seconds (the bridge is cut; the agent still reaches the site broker)
   and started again: alerts raised during the cut must all arrive after it, in raised order.
Figures go to stdout as JSON lines and a table (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402

from agentproc import log_events, pdm_agent, raised_alerts, rss_mib, stop  # noqa: E402
from broker import Broker, Subscriber  # noqa: E402
from footprint import cpu_seconds  # noqa: E402

FLAPPY = {"debounce_n": 1, "debounce_m": 1, "hysteresis": 0.0}
FAULTS = ("outer-race", "imbalance")


def ts_of(payload: dict) -> float:
    return datetime.fromisoformat(payload["ts"].replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else float("nan")


class ShareConsumer:
    """An MQTT 5 client in shared-subscription group `group`: records (id, device, ts, received)."""

    def __init__(self, host: str, port: int, name: str, topic: str) -> None:
        self.got: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"{name} could not subscribe to {topic}")

    def _on_message(self, client, userdata, msg) -> None:
        now = time.time()
        body = json.loads(msg.payload)
        with self._lock:
            self.got.append((body["id"], body["device"], ts_of(body), now))

    def snapshot(self) -> list[tuple[str, str, float, float]]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def agent_config(path: Path, *, host: str, port: int, device: str, storage: Path, rate: int, seed: int,
                 fault: str | None, fault_at: float, learn_s: float, warning: float,
                 sensors: tuple[str, ...] = ("pump1",)) -> Path:
    """A contract-key config: product MQTT defaults (keepalive, status interval, back-off), one low-rate
    simulated sensor with 1 s windows and flapping alert settings."""
    cfg = {
        "device": {"id": device},
        "mqtt": {"host": host, "port": port, "topic_prefix": "pdm"},
        "storage": {"dir": str(storage)},
        "sensors": [{"name": name, "protocol": "sim", "sample_rate": rate, "channels": ["ax", "ay", "az", "temp"],
                     "window": {"size": rate, "hop": rate},
                     "simulator": {"fault": fault, "fault_at": fault_at + 2 * k, "seed": seed + k},
                     "detector": {"learn_seconds": learn_s}, "alerts": {**FLAPPY, "warning": warning}}
                    for k, name in enumerate(sensors)],
        "aggregates": {"interval": 10},
        "logging": {"level": "info", "format": "json"},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def connected(log: Path) -> bool:
    return log.exists() and any(e.get("event") == "broker connected" for e in log_events(log))


def sample_broker(pid: int, seconds: float) -> dict:
    """The broker's CPU share and median RSS over `seconds` (RSS sampled every second)."""
    c0, t0, rss = cpu_seconds(pid), time.monotonic(), []
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        rss.append(rss_mib(pid))
    return {"cpu_pct": 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0), "rss_mib": statistics.median(rss)}


def fleet(tmp: Path, args) -> dict:
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker", extra=["max_queued_messages 1000", "max_inflight_messages 20"])
    broker.start()
    pid = broker.pid
    share = "$share/ops/pdm/+/+/alert"
    consumers = [ShareConsumer(broker.host, broker.port, f"ops-{k}", share) for k in (1, 2)]
    monitor = Subscriber(broker.host, broker.port, ["pdm/#"])
    agents, logs = [], []
    try:
        idle = sample_broker(pid, args.idle)
        print(json.dumps({"phase": "idle broker", **idle}), flush=True)
        for i in range(args.agents):
            d = tmp / f"a{i:03d}"
            d.mkdir()
            cfg = agent_config(d / "c.yaml", host=broker.host, port=broker.port, device=f"fleet-{i:03d}",
                               storage=d / "state", rate=args.rate, seed=i + 1, fault=FAULTS[i % 2],
                               fault_at=args.learn + 10 + (i % 5) * 5, learn_s=args.learn,
                               warning=args.warning)
            logs.append(d / "agent.log")
            agents.append(pdm_agent("run", "--config", str(cfg), stdout=open(logs[-1], "wb"), stderr=subprocess.STDOUT))
            time.sleep(args.stagger)
        deadline = time.monotonic() + 120
        while not all(connected(log) for log in logs) and time.monotonic() < deadline:
            time.sleep(1)
        up = sum(connected(log) for log in logs)
        alive = sum(a.poll() is None for a in agents)
        print(json.dumps({"phase": "started", "agents": args.agents, "connected": up, "alive": alive}), flush=True)
        time.sleep(10)
        a0 = {a.pid: cpu_seconds(a.pid) for a in agents if a.poll() is None}
        m0, t0 = len(monitor.snapshot()), time.monotonic()
        loaded = sample_broker(pid, args.seconds)
        wall = time.monotonic() - t0
        window = monitor.snapshot()[m0:]
        agent_cpu = [100 * (cpu_seconds(p) - c) / wall for p, c in a0.items()]
        agent_rss = [rss_mib(p) for p in a0]
        # Let the alerts raised so far arrive, then stop the agents (their outbox keeps any rest).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            raised = {r for log in logs for r in raised_alerts(log)}
            if raised <= {g[0] for c in consumers for g in c.snapshot()}:
                break
            time.sleep(1)
        for a in agents:  # all at once: one by one would take a second or two each
            a.send_signal(15)
        codes = [a.wait(60) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
        for c in consumers:
            c.close()
        monitor.close()
        broker.stop()
    got = [g for c in consumers for g in c.snapshot()]
    ids = [g[0] for g in got]
    first: dict[str, tuple] = {}
    for g in sorted(got, key=lambda g: g[3]):
        first.setdefault(g[0], g)
    lost = {f"fleet-{i:03d}": len(set(raised_alerts(log)) - set(first)) for i, log in enumerate(logs)}
    raised_n = sum(len(set(raised_alerts(log))) for log in logs)
    lat = [1000 * (g[3] - g[2]) for g in first.values()]
    kinds: dict[str, int] = {}
    for m in window:
        kinds[m.topic.rsplit("/", 1)[1]] = kinds.get(m.topic.rsplit("/", 1)[1], 0) + 1
    n = len(a0)
    return {
        "agents": args.agents, "running": n, "exit_codes_nonzero": sum(c != 0 for c in codes),
        "rate_hz": args.rate, "window_s": 1.0, "warning": args.warning, "measure_s": round(wall, 1),
        "broker_idle_rss_mib": round(idle["rss_mib"], 2), "broker_loaded_rss_mib": round(loaded["rss_mib"], 2),
        "broker_idle_cpu_pct": round(idle["cpu_pct"], 2), "broker_loaded_cpu_pct": round(loaded["cpu_pct"], 2),
        "broker_rss_kib_per_agent": round(1024 * (loaded["rss_mib"] - idle["rss_mib"]) / max(1, n), 1),
        "broker_cpu_pct_per_agent": round((loaded["cpu_pct"] - idle["cpu_pct"]) / max(1, n), 4),
        "msgs_per_s": round(len(window) / wall, 2), "msgs_by_kind": kinds,
        "bytes_per_s": round(sum(len(m.payload) + len(m.topic) for m in window) / wall, 1),
        "agent_cpu_pct_median": round(statistics.median(agent_cpu), 2) if agent_cpu else None,
        "agent_rss_mib_median": round(statistics.median(agent_rss), 1) if agent_rss else None,
        "alerts_raised": raised_n, "alerts_received": len(first), "alerts_doubled": len(ids) - len(set(ids)),
        "alerts_per_consumer": [len(c.snapshot()) for c in consumers],
        "lost_total": sum(lost.values()), "agents_with_loss": sorted(k for k, v in lost.items() if v),
        "latency_ms_p50": round(pct(lat, 0.5), 1), "latency_ms_p99": round(pct(lat, 0.99), 1),
        "latency_ms_max": round(max(lat), 1) if lat else None,
    }


def bridge(tmp: Path, args) -> dict:
    (tmp / "central").mkdir()
    (tmp / "site").mkdir()
    central = Broker(tmp / "central", persistence=True)
    central.start()
    site = Broker(tmp / "site", persistence=True, extra=[
        "max_queued_messages 10000", "max_queued_bytes 0", "max_inflight_messages 20",
        "connection central", f"address {central.host}:{central.port}", "topic pdm/# out 1",
        f"cleansession {args.cleansession}", "clientid site-1-bridge", "bridge_protocol_version mqttv311",
        "restart_timeout 2 10", "notifications false"])
    site.start()
    sub = Subscriber(central.host, central.port, ["pdm/#"], client_id="central-ops")
    d = tmp / "agent"
    d.mkdir()
    log = d / "agent.log"
    cfg = agent_config(d / "c.yaml", host=site.host, port=site.port, device="site-1-gw", storage=d / "state",
                       rate=args.rate, seed=7, fault="outer-race", fault_at=args.learn + 5, learn_s=args.learn,
                       warning=args.warning,
                       sensors=("pump1", "fan2"))
    agent = pdm_agent("run", "--config", str(cfg), stdout=open(log, "wb"), stderr=subprocess.STDOUT)

    def alerts() -> list[tuple[str, float]]:
        return [(json.loads(m.payload)["id"], m.received) for m in sub.snapshot() if m.topic.endswith("/alert")]

    try:
        deadline = time.monotonic() + args.learn + 90
        while not alerts() and time.monotonic() < deadline:
            time.sleep(0.5)
        before = raised_alerts(log)
        central.stop()
        cut_at = time.time()
        time.sleep(args.cut)
        during = [i for i in raised_alerts(log) if i not in set(before)]
        central.start()
        restored = time.time()
        deadline = time.monotonic() + 60
        while not set(during) <= {i for i, _ in alerts()} and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        raised = raised_alerts(log)
        got = alerts()
        code = stop(agent)
    finally:
        if agent.poll() is None:
            agent.kill()
        sub.close()
        site.stop()
        central.stop()
    ids = [i for i, _ in got]
    seen = set(ids)
    gaps = 0  # aggregates missing, doubled or out of order at the central subscriber, per sensor
    for sensor in ("pump1", "fan2"):
        ts = [ts_of(json.loads(m.payload)) for m in sub.snapshot() if m.topic.endswith(f"/{sensor}/aggregate")]
        gaps += sum(1 for a, b in zip(ts, ts[1:]) if b - a != 10)
    after = [t for i, t in got if i in set(during)]
    return {
        "cut_s": args.cut, "cleansession": args.cleansession, "warning": args.warning, "agent_exit": code,
        "alerts_before_cut": len(before), "alerts_raised_during_cut": len(during),
        "delivered_after_restore": sum(1 for i in during if i in seen),
        "lost": len(set(during) - seen), "doubled": len(ids) - len(seen),
        "in_raised_order": [i for i in dict.fromkeys(ids)] == [i for i in raised if i in seen],
        "drain_s_after_restore": round(max(after) - restored, 2) if after else None,
        "aggregates_received": sum(1 for m in sub.snapshot() if m.topic.endswith("/aggregate")),
        "aggregate_gaps": gaps,
        "cut_started": round(cut_at, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=120, help="the measuring window with all agents running")
    ap.add_argument("--idle", type=float, default=15, help="broker measured without agents for this long")
    ap.add_argument("--rate", type=int, default=256, help="simulated samples/s per channel (windows are 1 s)")
    ap.add_argument("--learn", type=float, default=20, help="detector.learn_seconds")
    ap.add_argument("--stagger", type=float, default=0.5, help="seconds between agent starts")
    ap.add_argument("--warning", type=float, default=0.5,
                    help="alerts.warning (0.05 makes a healthy machine flap: many alerts, a stress test)")
    ap.add_argument("--cut", type=float, default=30, help="seconds the bridge is cut")
    ap.add_argument("--cleansession", choices=["true", "false"], default="false")
    ap.add_argument("--only", choices=["fleet", "bridge"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
        if args.only in (None, "fleet"):
            print(json.dumps({"fleet": fleet(Path(tmp), args)}), flush=True)
        if args.only in (None, "bridge"):
            print(json.dumps({"bridge": bridge(Path(tmp), args)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
