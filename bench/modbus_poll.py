"""Modbus RTU poll timing: one complete poll of a preset's register map through a pty.

The slave is `drivers.modbus_slave` (pymodbus server) behind a relay that holds every chunk for
its time on the wire at the chosen baud rate (10 bits per byte), so the figures are those of an
RS-485 line plus our and pymodbus' overhead. The client is the agent's ModbusSource.

    .venv/bin/python bench/modbus_poll.py [--polls 50] [--bauds 9600,115200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.modbus import ModbusSource, plan_reads  # noqa: E402
from drivers.modbus_slave import serve_modbus  # noqa: E402
from drivers.presets import PRESETS  # noqa: E402


def bench(preset: str, baud: int, polls: int) -> dict:
    spec = PRESETS[preset]
    with tempfile.TemporaryDirectory() as tmp:
        link = str(Path(tmp) / "tty")
        stop = threading.Event()
        th = threading.Thread(target=serve_modbus, args=(link, preset), kwargs={"baudrate": baud, "stop": stop})
        th.start()
        while not Path(link).exists():
            time.sleep(0.02)
        src = ModbusSource("b", link, registers=spec.registers, slave_id=spec.slave_id, baudrate=baud,
                           timeout=1.0, retries=0)
        times = []
        for _ in range(polls):
            t0 = time.perf_counter()
            ok = src.poll() is not None
            if ok:
                times.append((time.perf_counter() - t0) * 1000)
        src.close()
        stop.set()
        th.join()
    regs = sum(r.count for r in plan_reads(spec.registers))
    wire = (8 + 5 + 2 * regs) * 10 / baud * 1000  # request + response bytes, 10 bits each
    t = np.array(times)
    return {"preset": preset, "baud": baud, "registers": regs, "ok": len(t), "polls": polls,
            "mean": t.mean(), "p50": np.median(t), "p95": np.percentile(t, 95), "wire": wire}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=50)
    ap.add_argument("--bauds", default="9600,115200")
    args = ap.parse_args()
    print("| preset | baud | registers | polls ok | mean ms | p50 ms | p95 ms | wire time ms |")
    print("|---|---|---|---|---|---|---|---|")
    for preset in PRESETS:
        for baud in (int(b) for b in args.bauds.split(",")):
            r = bench(preset, baud, args.polls)
            print(f"| {r['preset']} | {r['baud']} | {r['registers']} | {r['ok']}/{r['polls']} | {r['mean']:.1f} | "
                  f"{r['p50']:.1f} | {r['p95']:.1f} | {r['wire']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
