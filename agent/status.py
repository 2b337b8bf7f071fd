"""The status document: what the retained status topic, `pdm-agent status` and the status file
show (docs/mqtt.md, "Status"): the agent's vitals, and per sensor its health, baseline, model,
counters and active alert levels. Built from the running parts, read-only.
"""

from __future__ import annotations

import time

from agent.health import rss_mib


def document(*, started: float, cpu, workers: dict, models, levels, outbox, config_path: str,
             last_reload: dict, fleet=None) -> dict:
    """The status of a running service. `started` is its start (epoch s), `cpu` a CpuMeter,
    `workers` sensor name -> SensorWorker, `models` the ModelManager, `levels` the AlertLevels,
    `outbox` the Store (None before start), `fleet` the FleetShare (agent/fleet_share.py) or None."""
    sensors = {}
    for name, w in list(workers.items()):
        p = w.pipeline
        sensors[name] = {
            "online": w.online,
            "baseline": p.baseline(),
            "model": p.model_name,
            "windows": p.stats.windows,
            "alerts": p.stats.alerts,
            "alert_level": p.policy.level,
            "last_score": None if p.stats.last_score is None else round(p.stats.last_score, 4),
            **({"error": w.error} if w.error else {}),
            **w.counters(),
            "health": p.sensor_health.report(w.online),
            **({"iso10816": p.iso.state()} if p.iso.last_zone else {}),
            **p.diagnosis.status(),
            **models.status(name),
            **(fleet.status(name, p) if fleet is not None else {}),
            **alert_status(levels, name, w),
        }
    depth = outbox.depth() if outbox else {}
    return {
        "uptime_s": round(time.time() - started, 1),
        "rss_mib": round(rss_mib(), 1),
        "cpu_percent": cpu.percent(),
        "sensors": sensors,
        "outbox": {**depth, "dropped": dict(outbox.dropped) if outbox else {},
                   "rejected": dict(outbox.rejected) if outbox else {}},
        "storage": outbox.state() if outbox else {},
        "config": {"path": config_path, "reload": last_reload},
    }


def alert_status(levels, name: str, worker) -> dict:
    """The active level of each alert kind of a sensor, with the last alert (agent/alert_state.py)."""
    p = worker.pipeline
    return levels.status(name, {"anomaly": p.policy.level, "iso10816": p.iso.state()["level"],
                                "sensor_offline": "alarm" if worker.offline else "clear"})
