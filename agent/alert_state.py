"""The last alert level raised per sensor and kind, kept on disk.

An alarm raised before a restart (or a reload that rebuilt the sensor) must still be cleared
when the condition ends: subscribers hold the alarm until they see `clear`. The pipeline
restores these levels at start, so a sensor that comes back healthy emits that `clear`.
Alerts are rare, so one small atomic JSON write per alert costs nothing.
"""

from __future__ import annotations

import json
import os
import threading

from agent.records import Alert


class AlertLevels:
    """`levels(sensor)` -> {kind: level}; `record(alert)` persists an alert's new level.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> AlertLevels(d).record(Alert(1.0, "gw", "pump1", "alarm", 1.0, 5.0, "m@1", (), kind="sensor_offline"))
    >>> AlertLevels(d).levels("pump1")
    {'sensor_offline': 'alarm'}
    """

    def __init__(self, storage_dir: str) -> None:
        self._dir = os.path.join(storage_dir, "alerts")
        self._lock = threading.Lock()

    def _path(self, sensor: str) -> str:
        return os.path.join(self._dir, f"{sensor}.json")

    def levels(self, sensor: str) -> dict[str, str]:
        try:
            with open(self._path(sensor)) as f:
                data = json.load(f)
            return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def record(self, alert: Alert) -> None:
        with self._lock:
            levels = self.levels(alert.sensor)
            if levels.get(alert.kind, "clear") == alert.level:
                return
            levels[alert.kind] = alert.level
            os.makedirs(self._dir, exist_ok=True)
            tmp = self._path(alert.sensor) + ".tmp"
            with open(tmp, "w") as f:
                json.dump(levels, f)
            os.replace(tmp, self._path(alert.sensor))
