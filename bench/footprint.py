"""Footprint of the daemon: RSS and CPU share while streaming 3 axes + temperature at 3.2 kHz.

Real parts: `pdm-agent simulate` on a pty (lines protocol), `pdm-agent run` reading it, a real
Mosquitto on a free port. CPU share = (utime + stime of the agent) / wall time, per one core.

    .venv/bin/python bench/footprint.py --seconds 60 [--rate 3200] [--protocol lines|sim] [--privacy]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agentproc import lines_sensor, pdm_agent, rss_mib, start_simulator, stop, write_config  # noqa: E402
from broker import Broker  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=3200)
    ap.add_argument("--protocol", choices=["lines", "sim"], default="lines")
    ap.add_argument("--privacy", action="store_true", help="aggregates.privacy on (OpenDP; docs/privacy.md)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        broker = Broker(tmp)
        broker.start()
        link = tmp / "ttySIM"
        sim = start_simulator(link, rate=args.rate) if args.protocol == "lines" else None
        sensor = lines_sensor("pump1", link, learn_seconds=30, rate=args.rate)
        if args.protocol == "sim":
            sensor.update(protocol="sim", port=None)
        sensor["window"] = {"size": 4096, "hop": 2048}
        extra = {"aggregates": {"interval": 10, "privacy": {"epsilon": 1.0, "bounds": {"*.rms_g": [0, 0.5]}}}} \
            if args.privacy else {}
        cfg = write_config(tmp / "config.yaml", broker=broker, storage=tmp / "state", sensors=[sensor], interval=10,
                           **extra)
        agent = pdm_agent("run", "--config", str(cfg))
        try:
            time.sleep(5)  # start-up (imports) is not steady state
            c0, t0 = cpu_seconds(agent.pid), time.monotonic()
            samples = []
            while time.monotonic() - t0 < args.seconds - 5:
                time.sleep(5)
                samples.append(rss_mib(agent.pid))
            c1, t1 = cpu_seconds(agent.pid), time.monotonic()
            rss = rss_mib(agent.pid)
        finally:
            stop(agent)
            if sim:
                stop(sim)
            broker.stop()
    print("| protocol | rate | channels | after | RSS MiB | RSS min..max MiB | CPU % of one core |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.protocol}{' + privacy' if args.privacy else ''} | {args.rate} Hz | ax,ay,az,temp | {args.seconds:.0f} s | {rss:.1f} | "
          f"{min(samples):.1f}..{max(samples):.1f} | {100 * (c1 - c0) / (t1 - t0):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
