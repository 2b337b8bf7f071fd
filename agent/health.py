"""The agent's own vital signs for the status topic: uptime, RSS, CPU share."""

from __future__ import annotations

import time


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class CpuMeter:
    """CPU share of one core since the previous call (100 = one core busy)."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def percent(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        dw = wall - self._wall
        share = 100.0 * (cpu - self._cpu) / dw if dw > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        return round(share, 1)

