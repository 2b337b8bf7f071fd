"""One line of plain text per alert or aggregate, for `pdm-agent watch` and `pdm-agent status`.

Each alert kind says what its numbers are: `anomaly` a calibrated score against a score
threshold (0..1, no unit), `iso10816` an RMS velocity against a zone boundary in mm/s,
`sensor_offline` seconds without data against `health.offline_after_s` in seconds.
Kinds this build does not know are printed with their raw numbers.
"""

from __future__ import annotations


def _num(value) -> str:
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return str(value)


def describe_alert(a: dict) -> str:
    """`TS SENSOR LEVEL KIND: what was measured against what; the reason`.

    >>> describe_alert({"ts": "2026-11-30T15:39:12.000Z", "sensor": "pump1", "level": "alarm", "kind": "anomaly",
    ...                 "score": 0.97, "threshold": 0.9, "reason": [
    ...                     {"feature": "ax.kurtosis", "value": 5.21, "contribution": 0.61},
    ...                     {"feature": "az.envelope_rms_g", "value": 0.311, "contribution": 0.2}]})
    '2026-11-30T15:39:12.000Z pump1 ALARM anomaly: score 0.97 >= 0.9; ax.kurtosis=5.21 (contribution 0.61), az.envelope_rms_g=0.311 (contribution 0.2)'
    >>> describe_alert({"ts": "T", "sensor": "pump1", "level": "warning", "kind": "iso10816", "score": 0.7,
    ...                 "threshold": 2.8, "reason": [{"feature": "ax.velocity_rms_mm_s in ISO 10816-3 zone C (...)",
    ...                 "value": 3.1, "contribution": 1.0}]})
    'T pump1 WARNING iso10816: velocity 3.1 mm/s >= 2.8 mm/s; ax.velocity_rms_mm_s in ISO 10816-3 zone C (...)'
    >>> describe_alert({"ts": "T", "sensor": "pump1", "level": "clear", "kind": "sensor_offline", "score": 0.0,
    ...                 "threshold": 10.0, "reason": [{"feature": "seconds_without_data", "value": 0.4, "contribution": 1.0}]})
    'T pump1 clear sensor_offline: data again (offline after 10 s without data)'
    """
    kind, level = a.get("kind", "anomaly"), str(a.get("level", "?"))
    shown = level.upper() if level in ("warning", "alarm") else level
    reason = a.get("reason") or []
    first = reason[0] if reason and isinstance(reason[0], dict) else {}
    thr = _num(a.get("threshold"))
    if kind == "anomaly":
        op = ">=" if level != "clear" else "<"
        what = f"score {_num(a.get('score'))} {op} {thr}" if level != "clear" else \
            f"score {_num(a.get('score'))} (back below the thresholds)"
        # contribution: the feature's distance from its learned baseline (|z|, in baseline
        # standard deviations, for the on-device detectors); not a share, so not a percentage.
        parts = [f"{r.get('feature')}={_num(r.get('value'))}" + (
            f" (contribution {_num(r['contribution'])})" if isinstance(r.get("contribution"), (int, float)) else "")
            for r in reason if isinstance(r, dict)]
        detail = ", ".join(parts)
        if isinstance(a.get("diagnosis"), dict):
            from agent.diagnosis import diagnosis_text

            detail += f"; diagnosis: {diagnosis_text(a['diagnosis'])}"
    elif kind == "iso10816":
        op = ">=" if level != "clear" else "<"
        what = f"velocity {_num(first.get('value'))} mm/s {op} {thr} mm/s"
        detail = str(first.get("feature", ""))
    elif kind == "sensor_offline":
        what = (f"no data for {_num(first.get('value'))} s (threshold {thr} s)" if level != "clear"
                else f"data again (offline after {thr} s without data)")
        detail = ""
    else:
        what = f"score {_num(a.get('score'))}, threshold {thr}"
        detail = ", ".join(f"{r.get('feature')}={_num(r.get('value'))}" for r in reason if isinstance(r, dict))
    line = f"{a.get('ts', '?')} {a.get('sensor', '?')} {shown} {kind}: {what}"
    return f"{line}; {detail}" if detail else line


def describe_aggregate(a: dict) -> str:
    """`TS SENSOR aggregate INTERVAL: COUNT windows, score mean/max`.

    >>> describe_aggregate({"ts": "T", "sensor": "pump1", "interval_s": 60, "count": 0, "features": {}})
    'T pump1 aggregate 60 s: 0 windows (no data in this interval)'
    """
    head = f"{a.get('ts', '?')} {a.get('sensor', '?')} aggregate {_num(a.get('interval_s'))} s: {a.get('count')} windows"
    features = a.get("features") or {}
    if not a.get("count"):
        return head + " (no data in this interval)"
    score = features.get("score") or {}
    shown = [f"score mean {_num(score.get('mean'))} max {_num(score.get('max'))}"] if score else []
    for name, stats in features.items():
        if name.endswith(("velocity_rms_mm_s", "mean_c")) and isinstance(stats, dict):
            shown.append(f"{name} max {_num(stats.get('max'))}")
    return head + (", " + ", ".join(shown) if shown else "")
