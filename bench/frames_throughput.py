"""Binary frames through a real pty: how many samples per second the decoder sustains, and what
share of a core the whole agent uses at a real sensor's rate.

1. Capacity: a child process writes pre-encoded frames (64 samples x 3 axes int16) into a pty
   master as fast as the pty takes them; this process reads the slave with SerialFramesSource
   (the agent's code) and counts samples, sequence gaps and its own CPU time.
2. Agent share: `pdm-agent simulate --protocol frames` (3.2 kHz x ax,ay,az,temp) and
   `pdm-agent run` on it (full pipeline, broker unreachable: it buffers); CPU = (utime+stime)/wall.

    .venv/bin/python bench/frames_throughput.py [--seconds 10] [--agent-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tty
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from agentproc import pdm_agent, stop, write_config  # noqa: E402
from drivers.frames import FrameEncoder, SerialFramesSource  # noqa: E402


def capacity(seconds: float) -> dict:
    master, slave = os.openpty()
    tty.setraw(slave)
    enc = FrameEncoder((1 / 2048,) * 3)
    x = np.random.default_rng(0).normal(0, 0.2, (3200, 3))
    # One second of a 3.2 kHz sensor, re-sent as is: each repeat restarts the sequence numbers,
    # which the decoder takes as a sender restart (a gap event), never as lost frames.
    chunk = enc.encode_many(x, 64)
    pid = os.fork()
    if pid == 0:  # the sender
        os.close(slave)
        end = time.monotonic() + seconds + 1
        while time.monotonic() < end:
            os.write(master, chunk)
        os._exit(0)
    source = SerialFramesSource("bench", os.ttyname(slave), 3_000_000, ("ax", "ay", "az"))
    source.read()
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    samples = 0
    while time.monotonic() - t0 < seconds:
        frame = source.read()
        if frame is not None:
            samples += len(frame.samples)
    wall = time.monotonic() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    source.close()
    os.close(master)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    c = source.decoder.counters()
    return {"samples_per_s": samples / wall, "reader_cpu_share": cpu / wall, "crc_errors": c["crc_errors"],
            "frames_lost": c["frames_lost"]}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_share(seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        link = tmp / "ttyFR"
        sim = pdm_agent("simulate", "--link", str(link), "--protocol", "frames", "--rate", "3200",
                        stdout=open(tmp / "sim.log", "wb"))
        while not link.exists():
            time.sleep(0.05)

        class NoBroker:  # nothing listens there: the agent buffers, the pipeline runs fully
            host, port = "127.0.0.1", 9

        sensor = {"name": "m", "port": str(link), "protocol": "frames", "baudrate": 460800, "sample_rate": 3200,
                  "channels": ["ax", "ay", "az", "temp"], "window": {"size": 4096, "hop": 2048},
                  "detector": {"learn_seconds": 3600}}
        config = write_config(tmp / "c.yaml", broker=NoBroker, storage=tmp / "state", sensors=[sensor])
        agent = pdm_agent("run", "--config", str(config), stdout=open(tmp / "agent.log", "wb"))
        time.sleep(5)  # start-up (imports, port open) is not the steady state
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(agent.pid) - c0, time.monotonic() - t0
        stop(agent)
        stop(sim)
    return {"agent_cpu_share": cpu / wall, "rate": 3200, "channels": 4}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--agent-seconds", type=float, default=30.0)
    args = ap.parse_args()
    cap = capacity(args.seconds)
    print(f"pty capacity: {cap['samples_per_s']:,.0f} samples/s (3 axes int16, 64-sample frames), "
          f"reader CPU {100 * cap['reader_cpu_share']:.0f}% of a core, "
          f"crc_errors {cap['crc_errors']}, frames lost {cap['frames_lost']}")
    share = agent_share(args.agent_seconds)
    print(f"agent at 3200 Hz x 4 channels (frames, full pipeline): {100 * share['agent_cpu_share']:.1f}% of a core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
