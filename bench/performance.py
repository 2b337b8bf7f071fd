"""Performance of the agent, every figure measured side by side in one run (docs/BENCHMARKS.md).

    .venv/bin/python bench/performance.py            # ~4 min: the table in docs/BENCHMARKS.md
    .venv/bin/python bench/performance.py --quick    # ~1.5 min, fewer repeats, shorter runs
    .venv/bin/python bench/performance.py --only throughput latency footprint startup

1. Throughput through a real pty. A writer thread pushes pre-formatted `lines` data (the simulated
   machine, ax,ay,az,temp at 3.2 kHz, drivers/pty_server.format_lines) into a pty as fast as the
   reader takes it. Measured on the same bytes, in turn: (a) raw: `SerialTransport.read()` only, the
   physical limit of this pty; (b) the pipeline: `SerialLinesSource` -> `SensorPipeline.process`
   (windowing, features, gaussian detector, policy, aggregator, emitting into a real SQLite
   Outbox), with a baseline learned beforehand, so it measures steady-state scoring; (c) the naive
   per-sample pure-Python pipeline of bench/naive_pipeline.py behind the same transport. Medians of
   the repeats; ratios b/a and b/c.
2. Alert latency: `pdm-agent run` on `pdm-agent simulate`, a real Mosquitto, alert settings that
   flap (warning 0.05, debounce 1-of-1, hysteresis 0) so a healthy machine raises many alerts.
   Latency = subscriber receive time - the alert's `ts` (the window end, millisecond resolution;
   same machine, same clock).
3. Footprint at 3 sensors x 3 axes (+ temperature) x 3.2 kHz: three `pdm-agent simulate` on ptys,
   one agent with three `lines` sensors; RSS and CPU share (utime + stime / wall, 100 % = one
   core) after a warm-up, while every sensor scores.
4. Start-up: exec of `pdm-agent run` -> READY=1 on a fake NOTIFY_SOCKET (an AF_UNIX datagram
   socket we bind), and -> the first retained `online` status at a subscriber.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import numpy as np  # noqa: E402

from agentproc import lines_sensor, pdm_agent, rss_mib, start_simulator, stop, write_config  # noqa: E402
from broker import Broker, Subscriber  # noqa: E402
from footprint import cpu_seconds  # noqa: E402

RATE = 3200
CHANNELS = ("ax", "ay", "az", "temp")
WINDOW = {"size": 4096, "hop": 2048}  # the footprint bench's setting: default size, 50 % overlap


def median(values) -> float:
    return float(statistics.median(values))


# -- 1. throughput ----------------------------------------------------------------------------
def machine_lines(seconds: float, seed: int = 1) -> tuple[np.ndarray, bytes]:
    from drivers.pty_server import format_lines
    from drivers.simulator import Machine

    samples = Machine(rate=RATE, rpm=1780, seed=seed).generate(int(seconds * RATE))
    return samples, format_lines(samples)


def start_writer(master: int, data: bytes, repeats: int, go: threading.Event) -> threading.Thread:
    """A thread that writes `data` `repeats` times into the pty master, blocking while it is full.

    It starts on `go`, set by the reader once its port is open: opening flushes the tty's
    input (pyserial), which would lose whatever was written before.

    os.write releases the GIL, so the kernel's copying runs on the other core; the loop around
    it is a few Python bytecodes per 64 KiB. (A forked writer process stalled on this kernel.)
    """
    def write() -> None:
        if not go.wait(30):
            return
        os.set_blocking(master, True)
        view = memoryview(data)
        for _ in range(repeats):
            off = 0
            while off < len(view):
                off += os.write(master, view[off : off + 65536])

    thread = threading.Thread(target=write, name="pty-writer", daemon=True)
    thread.start()
    return thread


def sensor_config(name: str, port: str | None, **extra):
    from agent.config import parse_sensor

    return parse_sensor(name=name, port=port, protocol="lines", sample_rate=RATE, channels=list(CHANNELS),
                        window=WINDOW, **extra)


def warmed_pipeline(tmp: Path, warm: np.ndarray, learn_seconds: float):
    """A SensorPipeline emitting into a real outbox, its baseline learned on `warm` (dated up to now)."""
    from agent.outbox import Outbox
    from agent.pipeline import SensorPipeline
    from agent.records import Frame

    outbox = Outbox(str(tmp / "outbox.sqlite"), 64 * 2**20)
    emitted = []

    def emit(record) -> None:
        kind = "alert" if type(record).__name__ == "Alert" else "aggregate"
        emitted.append(kind)
        outbox.put(f"pdm/bench/{record.sensor}/{kind}", json.dumps(record.payload()).encode(), kind, record.sensor)

    cfg = sensor_config("pump1", "unused", detector={"learn_seconds": learn_seconds})
    pipeline = SensorPipeline(device="bench", sensor_cfg=cfg, aggregate_interval=60, emit=emit)
    t0 = time.time() - len(warm) / RATE
    block = RATE // 50  # the simulator's 20 ms blocks
    for start in range(0, len(warm), block):
        rows = warm[start : start + block]
        pipeline.process(Frame("pump1", t0 + (start + len(rows)) / RATE, CHANNELS, rows))
    assert pipeline.model.ready, "baseline not learned during warm-up"
    return pipeline, outbox, emitted


def warmed_naive(warm_bytes: bytes, seconds: float, learn_seconds: float):
    from naive_pipeline import NaivePipeline

    naive = NaivePipeline(RATE, WINDOW["size"], WINDOW["hop"], CHANNELS, ("temp",), learn_seconds=learn_seconds)
    lines = warm_bytes.split(b"\n")[:-1]
    t0 = time.time() - seconds
    block = RATE // 50
    for start in range(0, len(lines), block):
        part = lines[start : start + block]
        naive.feed(b"\n".join(part) + b"\n", t0 + (start + len(part)) / RATE)
    assert naive.ready, "naive baseline not learned during warm-up"
    return naive


def pump(tmp: Path, tag: str, data: bytes, repeats: int, consume) -> tuple[float, int]:
    """Push `data` x `repeats` through a fresh pty into `consume(link, total_bytes)`; (seconds, bytes)."""
    from drivers.pty_server import open_pty_link

    link = tmp / f"tty-{tag}"
    master, slave, _ = open_pty_link(str(link))
    try:
        go = threading.Event()
        writer = start_writer(master, data, repeats, go)
        try:
            seconds = consume(str(link), len(data) * repeats, go)
        finally:
            go.set()
            writer.join(5)
    finally:
        os.close(master)
        os.close(slave)
        os.unlink(link)
    return seconds, len(data) * repeats


def starved(first, last) -> bool:
    if first is not None and time.perf_counter() - last > 5:
        raise RuntimeError("reader starved: bytes were lost or the writer stopped")
    return False


def consume_raw(port: str, total: int, go: threading.Event) -> float:
    from drivers.transport import SerialTransport

    transport = SerialTransport(port, read_timeout=0.2)
    transport.read()  # opens the port (nothing to read yet)
    go.set()
    got, first, last = 0, None, time.perf_counter()
    try:
        while got < total and not starved(first, last):
            data = transport.read()
            if data:
                last = time.perf_counter()
            if data and first is None:
                first = time.perf_counter()  # every mode's clock starts at its first data
            got += len(data)
        return time.perf_counter() - first
    finally:
        transport.close()


def consume_pipeline(pipeline, n_samples: int):
    def consume(port: str, total: int, go: threading.Event) -> float:
        from drivers.lines import SerialLinesSource

        source = SerialLinesSource("pump1", port, 115200, CHANNELS)
        source.read()  # opens the port
        go.set()
        got, first, last = 0, None, time.perf_counter()
        try:
            while got < n_samples and not starved(first, last):
                frame = source.read()
                if frame is None:
                    continue
                last = time.perf_counter()
                if first is None:
                    first = time.perf_counter()
                pipeline.process(frame)
                got += len(frame.samples)
            return time.perf_counter() - first
        finally:
            source.close()
    return consume


def consume_naive(naive, n_samples: int):
    def consume(port: str, total: int, go: threading.Event) -> float:
        from drivers.transport import SerialTransport

        transport = SerialTransport(port, read_timeout=0.2)
        transport.read()  # opens the port
        go.set()
        got, first, last = 0, None, time.perf_counter()
        try:
            while got < n_samples and not starved(first, last):
                data = transport.read()
                if not data:
                    continue
                last = time.perf_counter()
                if first is None:
                    first = time.perf_counter()
                got += naive.feed(data, time.time())
            return time.perf_counter() - first
        finally:
            transport.close()
    return consume


def bench_throughput(tmp: Path, quick: bool) -> dict:
    repeats = 3 if quick else 5
    block_s = 20.0  # seconds of machine data per block; a run writes the block several times
    samples, data = machine_lines(block_s, seed=2)
    n_block = len(samples)
    fast_reps = 4 if quick else 10  # raw and pipeline: 80 / 200 s of machine data per run
    naive_reps = 1 if quick else 2

    warm, warm_bytes = machine_lines(30.0, seed=1)  # learn 20 s, then score
    pipeline, outbox, emitted = warmed_pipeline(tmp, warm, learn_seconds=20.0)
    naive = warmed_naive(warm_bytes, 30.0, learn_seconds=20.0)

    rates = {"raw": [], "pipeline": [], "naive": []}
    mb_s = []
    for r in range(repeats):
        s, nbytes = pump(tmp, f"raw{r}", data, fast_reps, consume_raw)
        rates["raw"].append(n_block * fast_reps / s)
        mb_s.append(nbytes / s / 1e6)
        w0 = pipeline.stats.windows
        s, _ = pump(tmp, f"pipe{r}", data, fast_reps, consume_pipeline(pipeline, n_block * fast_reps))
        rates["pipeline"].append(n_block * fast_reps / s)
        assert pipeline.stats.windows > w0
        s, _ = pump(tmp, f"naive{r}", data, naive_reps, consume_naive(naive, n_block * naive_reps))
        rates["naive"].append(n_block * naive_reps / s)
        print(f"  throughput repeat {r + 1}/{repeats}: raw {rates['raw'][-1]:,.0f}, pipeline "
              f"{rates['pipeline'][-1]:,.0f}, naive {rates['naive'][-1]:,.0f} samples/s", flush=True)
    outbox.close()
    med = {k: median(v) for k, v in rates.items()}
    return {
        "repeats": repeats, "bytes_per_sample": len(data) / n_block, "raw_mb_s": median(mb_s),
        "samples_raw": n_block * fast_reps, "samples_naive": n_block * naive_reps,
        "rates": rates, "median": med,
        "pipeline_over_raw": median([p / r for p, r in zip(rates["pipeline"], rates["raw"])]),
        "pipeline_over_naive": median([p / n for p, n in zip(rates["pipeline"], rates["naive"])]),
        "windows_scored": pipeline.stats.windows, "emitted": {k: emitted.count(k) for k in set(emitted)},
        "naive_windows": naive.windows,
    }


# -- 2. alert latency -------------------------------------------------------------------------
class TimedSubscriber(Subscriber):
    """Records the wall-clock receive time of every message."""

    def __init__(self, *args, **kwargs) -> None:
        self.received: list[tuple[float, str, bytes]] = []
        super().__init__(*args, **kwargs)

    def _on_message(self, client, userdata, msg) -> None:
        self.received.append((time.time(), msg.topic, bytes(msg.payload)))
        super()._on_message(client, userdata, msg)


def iso_to_epoch(ts: str) -> float:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def bench_latency(tmp: Path, quick: bool) -> dict:
    want, timeout = (30, 60.0) if quick else (150, 120.0)
    work = tmp / "latency"
    work.mkdir()
    broker = Broker(work)
    broker.start()
    link = work / "ttySIM"
    sim = start_simulator(link, rate=RATE, seed=5)
    sensor = lines_sensor("pump1", link, learn_seconds=10, rate=RATE)
    sensor["window"] = {"size": 1024, "hop": 512}  # 6.25 windows/s: many chances to flap
    sensor["alerts"] = {"warning": 0.05, "alarm": 0.5, "debounce_n": 1, "debounce_m": 1, "hysteresis": 0.0}
    cfg = write_config(work / "config.yaml", broker=broker, storage=work / "state", sensors=[sensor],
                       device="lat-gw", interval=10)
    sub = TimedSubscriber(broker.host, broker.port, ["pdm/lat-gw/+/alert"])
    agent = pdm_agent("run", "--config", str(cfg), stdout=open(work / "agent.log", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while len(sub.received) < want and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop(agent)
        stop(sim)
        sub.close()
        broker.stop()
    lat, kinds = [], {}
    for t_rx, _, payload in sub.received:
        alert = json.loads(payload)
        lat.append(1000.0 * (t_rx - iso_to_epoch(alert["ts"])))
        kinds[f"{alert.get('kind', 'anomaly')}/{alert['level']}"] = kinds.get(f"{alert.get('kind', 'anomaly')}/{alert['level']}", 0) + 1
    if not lat:
        raise RuntimeError(f"no alerts received; agent log: {(work / 'agent.log').read_text()[-2000:]}")
    a = np.array(lat)
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "min_ms": float(a.min()), "max_ms": float(a.max()), "kinds": kinds}


# -- 3. footprint -----------------------------------------------------------------------------
def bench_footprint(tmp: Path, quick: bool) -> dict:
    warmup, seconds = (15.0, 20.0) if quick else (20.0, 60.0)
    work = tmp / "footprint"
    work.mkdir()
    broker = Broker(work)
    broker.start()
    sims, sensors = [], []
    status = TimedSubscriber(broker.host, broker.port, ["pdm/fp-gw/status"])
    try:
        for i in range(3):
            link = work / f"ttySIM{i}"
            sims.append(start_simulator(link, rate=RATE, seed=10 + i))
            s = lines_sensor(f"pump{i + 1}", link, learn_seconds=10, rate=RATE)
            s["window"] = dict(WINDOW)
            sensors.append(s)
        cfg = write_config(work / "config.yaml", broker=broker, storage=work / "state", sensors=sensors,
                           device="fp-gw", interval=10)
        agent = pdm_agent("run", "--config", str(cfg), stdout=open(work / "agent.log", "wb"),
                          stderr=subprocess.STDOUT)
        try:
            time.sleep(warmup)  # imports, learning (10 s), first calibration: not steady state
            c0, s0, t0 = cpu_seconds(agent.pid), sum(cpu_seconds(p.pid) for p in sims), time.monotonic()
            rss = []
            while time.monotonic() - t0 < seconds:
                time.sleep(5)
                rss.append(rss_mib(agent.pid))
            c1, s1, t1 = cpu_seconds(agent.pid), sum(cpu_seconds(p.pid) for p in sims), time.monotonic()
            time.sleep(5.5)  # one more status (status_interval_s 5) with the final counters
        finally:
            stop(agent)
    finally:
        for p in sims:
            stop(p)
        status.close()
        broker.stop()
    health = {}
    for _, _, payload in status.received:
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if body.get("state") == "online" and "sensors" in body:
            health = body
    sensors_h = health.get("sensors", {})
    return {
        "warmup_s": warmup, "seconds": t1 - t0, "rss_mib": rss[-1], "rss_min": min(rss), "rss_max": max(rss),
        "cpu_percent": 100.0 * (c1 - c0) / (t1 - t0), "sim_cpu_percent": 100.0 * (s1 - s0) / (t1 - t0),
        "windows": {k: v.get("windows") for k, v in sensors_h.items()},
        "dropped_samples": {k: v.get("dropped_samples") for k, v in sensors_h.items()},
        "ready": {k: (v.get("baseline") or {}).get("state") for k, v in sensors_h.items()},
    }


# -- 4. start-up ------------------------------------------------------------------------------
def bench_startup(tmp: Path, quick: bool) -> dict:
    runs = 3 if quick else 7
    work = tmp / "startup"
    work.mkdir()
    broker = Broker(work)
    broker.start()
    link = work / "ttySIM"
    sim = start_simulator(link, rate=RATE, seed=7)
    exe = Path(sys.executable).with_name("pdm-agent")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "agent.cli"]
    ready, first_status, hangs = [], [], []
    try:
        for r in range(runs):
            device = f"su-gw{r}"  # a fresh status topic: no retained message from the run before
            sensor = lines_sensor("pump1", link, learn_seconds=60, rate=RATE)
            cfg = write_config(work / f"config{r}.yaml", broker=broker, storage=work / f"state{r}",
                               sensors=[sensor], device=device)
            sock_path = str(work / f"notify{r}.sock")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(sock_path)
            sub = TimedSubscriber(broker.host, broker.port, [f"pdm/{device}/status"])
            env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": sock_path}
            t0 = time.time()
            agent = subprocess.Popen([*cmd, "run", "--config", str(cfg)], cwd=ROOT, env=env,
                                     stdout=open(work / f"agent{r}.log", "wb"), stderr=subprocess.STDOUT)
            try:
                sock.settimeout(30)
                while True:
                    msg = sock.recv(4096).decode()
                    if "READY=1" in msg.split("\n"):
                        ready.append(time.time() - t0)
                        break
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    online = [t for t, _, p in sub.received if b'"online"' in p]
                    if online:
                        first_status.append(online[0] - t0)
                        break
                    time.sleep(0.01)
            finally:
                try:
                    stop(agent)
                except subprocess.TimeoutExpired:  # killed by stop(); keep the evidence
                    keep = Path(tempfile.gettempdir()) / f"pdm-perf-stop-hang-{r}.log"
                    keep.write_bytes((work / f"agent{r}.log").read_bytes())
                    hangs.append(str(keep))
                sock.close()
                sub.close()
            print(f"  start-up run {r + 1}/{runs}: READY after {ready[-1]:.3f} s, status after "
                  f"{first_status[-1] if len(first_status) > r else float('nan'):.3f} s", flush=True)
    finally:
        stop(sim)
        broker.stop()
    return {"runs": runs, "ready_s": ready, "status_s": first_status, "ready_median_s": median(ready),
            "status_median_s": median(first_status) if first_status else float("nan"),
            "stop_hangs": hangs}


# -- report -----------------------------------------------------------------------------------
def report(results: dict, args) -> str:
    out = [f"performance bench, {dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
           f"Python {platform.python_version()}, numpy {np.__version__}, load avg {os.getloadavg()[0]:.2f}"]
    if "throughput" in results:
        t = results["throughput"]
        m = t["median"]
        out += [
            "",
            f"Throughput (median of {t['repeats']} repeats; {t['samples_raw']:,} samples per raw/pipeline run, "
            f"{t['samples_naive']:,} per naive run; {t['bytes_per_sample']:.1f} bytes/sample):",
            "| path | samples/s | x real time (3.2 kHz) | ratio |",
            "|---|---|---|---|",
            f"| raw pty read (SerialTransport.read) | {m['raw']:,.0f} ({t['raw_mb_s']:.1f} MB/s) | "
            f"{m['raw'] / RATE:,.0f} | 1 |",
            f"| agent pipeline (SerialLinesSource -> SensorPipeline -> Outbox) | {m['pipeline']:,.0f} | "
            f"{m['pipeline'] / RATE:,.0f} | {t['pipeline_over_raw']:.2f} of raw |",
            f"| naive per-sample Python (bench/naive_pipeline.py) | {m['naive']:,.0f} | {m['naive'] / RATE:,.1f} | "
            f"pipeline is {t['pipeline_over_naive']:.1f}x faster |",
            f"  per repeat: {json.dumps({k: [round(v) for v in vs] for k, vs in t['rates'].items()})}",
            f"  windows scored by the pipeline: {t['windows_scored']}, emitted: {t['emitted']}; "
            f"naive windows: {t['naive_windows']}",
        ]
    if "latency" in results:
        lt = results["latency"]
        out += ["", f"Alert latency, window end -> subscriber ({lt['n']} alerts {lt['kinds']}): "
                    f"p50 {lt['p50_ms']:.0f} ms, p99 {lt['p99_ms']:.0f} ms, min {lt['min_ms']:.0f}, "
                    f"max {lt['max_ms']:.0f} ms"]
    if "footprint" in results:
        f = results["footprint"]
        out += ["", f"Footprint, 3 sensors x ax,ay,az,temp x 3.2 kHz, {f['seconds']:.0f} s after "
                    f"{f['warmup_s']:.0f} s warm-up: RSS {f['rss_mib']:.1f} MiB ({f['rss_min']:.1f}..{f['rss_max']:.1f}), "
                    f"CPU {f['cpu_percent']:.1f} % of one core (3 simulators: {f['sim_cpu_percent']:.1f} %); "
                    f"windows {f['windows']}, dropped {f['dropped_samples']}, baseline {f['ready']}"]
    if "startup" in results:
        s = results["startup"]
        out += ["", f"Start-up ({s['runs']} runs): exec -> READY=1 median {s['ready_median_s']:.3f} s "
                    f"{[round(v, 3) for v in s['ready_s']]}; exec -> first online status at subscriber median "
                    f"{s['status_median_s']:.3f} s {[round(v, 3) for v in s['status_s']]}"
                    + (f"; SIGTERM did not stop the agent within 20 s in {len(s['stop_hangs'])} run(s), logs: "
                       f"{s['stop_hangs']}" if s["stop_hangs"] else "")]
    return "\n".join(out)


def main() -> int:
    parts = ("throughput", "latency", "footprint", "startup")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs (~1.5 min)")
    ap.add_argument("--only", nargs="+", choices=parts, default=list(parts))
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    results = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pdm-perf-") as tmp:
        tmp = Path(tmp)
        for part in args.only:
            print(f"{part} ...", flush=True)
            results[part] = globals()[f"bench_{part}"](tmp, args.quick)
    text = report(results, args)
    print(f"\n{text}\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
