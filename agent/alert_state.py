"""The alert level raised per sensor and kind, and the last alert, kept on disk.

An alarm raised before a restart (or a reload that rebuilt the sensor) must still be cleared
when the condition ends: subscribers hold the alarm until they see `clear`. The pipeline
restores these levels at start, so a sensor that comes back healthy emits that `clear`.
Alerts are rare, so one small atomic JSON write per alert costs nothing.

Each kind (`anomaly`, `iso10816`, `sensor_offline`, ...) raises and clears on its own, on the
same topic; `condition` folds them into the one thing an operator asks: the highest level
active across kinds.
"""

from __future__ import annotations

import json
import os
import threading

from agent.records import LEVELS, Alert

_RANK = {level: i for i, level in enumerate(LEVELS)}  # clear < warning < alarm


def condition(levels: dict[str, str]) -> str:
    """The highest level across kinds.

    >>> condition({"anomaly": "warning", "iso10816": "clear", "sensor_offline": "alarm"})
    'alarm'
    >>> condition({})
    'clear'
    """
    return max(levels.values(), key=lambda lv: _RANK.get(lv, 0), default="clear")


class AlertLevels:
    """`levels(sensor)` -> {kind: level}; `last(sensor)` -> the last alert's payload or None;
    `record(alert)` persists both.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> AlertLevels(d).record(Alert(1.0, "gw", "pump1", "alarm", 1.0, 5.0, "m@1", (), kind="sensor_offline"))
    >>> AlertLevels(d).levels("pump1"), AlertLevels(d).last("pump1")["kind"]
    ({'sensor_offline': 'alarm'}, 'sensor_offline')
    """

    def __init__(self, storage_dir: str) -> None:
        self._dir = os.path.join(storage_dir, "alerts")
        self._lock = threading.Lock()

    def _path(self, sensor: str) -> str:
        return os.path.join(self._dir, f"{sensor}.json")

    def _read(self, sensor: str) -> dict:
        try:
            with open(self._path(sensor)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {"levels": {}, "last": None}
        if not isinstance(data, dict):
            return {"levels": {}, "last": None}
        if "levels" not in data:  # the first format: {kind: level} only
            data = {"levels": data, "last": None}
        levels = data.get("levels") if isinstance(data.get("levels"), dict) else {}
        return {"levels": {str(k): str(v) for k, v in levels.items()}, "last": data.get("last")}

    def levels(self, sensor: str) -> dict[str, str]:
        return self._read(sensor)["levels"]

    def last(self, sensor: str) -> dict | None:
        last = self._read(sensor)["last"]
        return last if isinstance(last, dict) else None

    def status(self, sensor: str, live: dict[str, str]) -> dict:
        """The status topic's alert fields for one sensor: per kind the level active now
        (`live` levels win over persisted ones, which cover kinds raised elsewhere), the one
        `condition` across kinds (also as `alert_level`), and the last alert. A subscriber that
        reads only the last alert message would see an `iso10816` clear while an `anomaly`
        alarm is still active; `condition` is what it should show."""
        data = self._read(sensor)
        levels = {**live, **{k: v for k, v in data["levels"].items() if k not in live}}
        overall = condition(levels)
        last = data["last"] if isinstance(data["last"], dict) else None
        return {"condition": overall, "alert_level": overall, "levels": levels, "last_alert": last}

    def record(self, alert: Alert) -> None:
        with self._lock:
            data = self._read(alert.sensor)
            data["levels"][alert.kind] = alert.level
            data["last"] = alert.payload()
            os.makedirs(self._dir, exist_ok=True)
            tmp = self._path(alert.sensor) + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self._path(alert.sensor))
