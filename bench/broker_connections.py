"""Broker cost at fleet size: C MQTT connections that publish like pdm-agents, on one Mosquitto.

    nice -n 10 .venv/bin/python bench/broker_connections.py --clients 1000 --seconds 60

A cross-check of the linear extrapolation in docs/fleet-deployment.md: 50 real agents cannot run at
once on a 2-core machine much beyond that, but the broker does not know an agent from any other
MQTT 3.1.1 client with the same traffic. Each client here connects with the agent's settings (client
id `pdm-agent-load-NNNN`, clean session, keepalive 30 s, the retained status plus its Last Will),
publishes its retained status once, then QoS 1 messages of `--bytes` (1,727 = the mean size
measured in bench/fleet_load.py) at `--rate` per second (0.168 = the per-agent rate measured there),
on `pdm/load-NNNN/pump1/aggregate`. One MQTT 5 consumer takes them through
`$share/ops/pdm/+/+/aggregate`, as the fleet's consumers would. All clients run in this one thread
with paho's non-blocking calls, so the generator costs little next to the broker.
Broker RSS and CPU (utime + stime from /proc, 100 % = one core) with the clients minus without,
per client, and the messages the consumer received per second.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import paho.mqtt.client as mqtt  # noqa: E402

from broker import Broker  # noqa: E402
from fleet_load import ShareConsumer, sample_broker  # noqa: E402
from footprint import cpu_seconds  # noqa: E402
from agentproc import rss_mib  # noqa: E402
from agent.records import iso_utc  # noqa: E402


def client(host: str, port: int, i: int) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"pdm-agent-load-{i:04d}",
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.will_set(f"pdm/load-{i:04d}/status", b'{"state":"offline","will":true}', qos=1, retain=True)
    c.max_queued_messages_set(24)
    c.connect(host, port, keepalive=30)
    return c


def pump(clients: list[mqtt.Client]) -> None:
    for c in clients:
        c.loop_read()
        if c.want_write():
            c.loop_write()
        c.loop_misc()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=0.168, help="messages/s per client")
    ap.add_argument("--bytes", type=int, default=1727, help="payload bytes per message")
    ap.add_argument("--idle", type=float, default=10)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="broker-conn-") as tmp:
        (Path(tmp) / "b").mkdir()
        broker = Broker(Path(tmp) / "b", extra=["max_queued_messages 1000", "max_inflight_messages 20"])
        broker.start()
        consumer = ShareConsumer(broker.host, broker.port, "ops-1", "$share/ops/pdm/+/+/aggregate")
        clients: list[mqtt.Client] = []
        try:
            idle = sample_broker(broker.pid, args.idle)
            payload = b"x" * args.bytes  # the retained status

            def message(k: int, seq: int) -> bytes:
                """An aggregate-shaped payload of `--bytes` with id, device and ts (for the latency)."""
                head = {"id": f"{k}-{seq}", "device": f"load-{k:04d}", "ts": iso_utc(time.time())}
                body = json.dumps({**head, "pad": ""})
                return json.dumps({**head, "pad": "x" * max(0, args.bytes - len(body))}).encode()
            for i in range(args.clients):
                clients.append(client(broker.host, broker.port, i))
                if i % 50 == 49:
                    pump(clients)
            for c in clients:
                c.publish(f"pdm/{c._client_id.decode().removeprefix('pdm-agent-')}/status", payload, qos=1, retain=True)
            rng = random.Random(1)
            settle = time.monotonic() + 10
            while time.monotonic() < settle:
                pump(clients)
                time.sleep(0.05)
            n0, c0, t0, own0 = len(consumer.snapshot()), cpu_seconds(broker.pid), time.monotonic(), time.process_time()
            due = [t0 + rng.uniform(0, 1 / args.rate) for _ in clients]  # Poisson, spread from the start
            rss, sent = [], 0
            next_rss = t0
            while (now := time.monotonic()) - t0 < args.seconds:
                for k, c in enumerate(clients):
                    if now >= due[k]:
                        c.publish(f"pdm/load-{k:04d}/pump1/aggregate", message(k, sent), qos=1)
                        sent += 1
                        due[k] = now + rng.expovariate(args.rate)
                pump(clients)
                if now >= next_rss:
                    rss.append(rss_mib(broker.pid))
                    next_rss = now + 1
                time.sleep(0.02)
            wall = time.monotonic() - t0
            cpu = 100 * (cpu_seconds(broker.pid) - c0) / wall
            window = consumer.snapshot()[n0:]
            lat = sorted(1000 * (g[3] - g[2]) for g in window)
            own = 100 * (time.process_time() - own0) / wall
        finally:
            for c in clients:
                c.disconnect()
            pump(clients)
            consumer.close()
            broker.stop()
    loaded_rss = sorted(rss)[len(rss) // 2]
    print(json.dumps({
        "clients": args.clients, "rate_per_client": args.rate, "payload_bytes": args.bytes, "measure_s": round(wall, 1),
        "broker_idle_rss_mib": round(idle["rss_mib"], 2), "broker_loaded_rss_mib": round(loaded_rss, 2),
        "broker_idle_cpu_pct": round(idle["cpu_pct"], 2), "broker_loaded_cpu_pct": round(cpu, 2),
        "broker_rss_kib_per_client": round(1024 * (loaded_rss - idle["rss_mib"]) / args.clients, 2),
        "broker_cpu_pct_per_client": round((cpu - idle["cpu_pct"]) / args.clients, 5),
        "published_per_s": round(sent / wall, 1), "consumer_msgs_per_s": round(len(window) / wall, 1),
        "latency_ms_p50": round(lat[len(lat) // 2], 1) if lat else None,
        "latency_ms_p99": round(lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
        "generator_cpu_pct": round(own, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
