"""`fleet.privacy`: differential-privacy noise on shared baselines, added on the device.

What is protected is one window, as for aggregates (agent/privacy.py, docs/privacy.md): from a
noised share, nobody (the broker, the merger, the machines that start from the prior) can tell
whether any one learned window was replaced by any other, beyond e^epsilon (plus delta). It does
not hide what many windows share: the machine's typical level, which is what a prior is for.

With `fleet.privacy` the sensor's gaussian detector is made with `clip` (the declared bounds of
every feature it learns), so it keeps sums of clipped windows beside its own statistics; the share
releases those sums with OpenDP's Gaussian mechanism (models/private_stats.py gives the
sensitivities) instead of the exact count, mean and covariance, and carries no calibration
quantiles (a median and a 99.9 % tail of one machine's scores have no bounded sensitivity): the
merge derives the prior's calibration from the noised statistics (agent/fleet_share.py `merge`).
The share's `privacy` block says mechanism, epsilon, delta, unit, covariance and bounds.

Bounds must not come from this machine's data (they would publish its extremes): declare them from
the machine type's specification, or from a reference machine that does not share
(`pdm-agent fleet bounds`, docs/federated.md).
"""

from __future__ import annotations

import json
import os

from models.pooling import PoolingError

UNIT = "window"


def sensor_features(sensor_cfg) -> list[str]:
    """The features a sensor's detector learns: a register map's values (modbus), else the
    waveform features of its channels (models/features.py)."""
    from drivers.base import driver_for
    from models.features import FeatureSpec, feature_names

    names = driver_for(sensor_cfg.protocol).value_names(sensor_cfg)
    return list(names) if names is not None else feature_names(FeatureSpec.of_sensor(sensor_cfg))


def clip_bounds(cfg, sensor_cfg) -> dict[str, list[float]] | None:
    """The gaussian detector's `clip` for a sensor: {feature: [low, high]} for every feature the
    sensor computes that has declared bounds, when `fleet.privacy` applies to it; else None."""
    fleet = cfg.fleet
    if fleet.privacy is None or not fleet.share_baseline or not fleet.covers(sensor_cfg.name):
        return None
    out = {}
    for name in sensor_features(sensor_cfg):
        bound = fleet.privacy.bounds_of(name)
        if bound is not None:
            out[name] = [float(bound[0]), float(bound[1])]
    return out


def unused_bounds(cfg) -> list[tuple[tuple, str]]:
    """`config check` warnings: fleet.privacy.bounds entries that bound no feature of a sharing
    sensor, because nothing matches them (a typo?) or an exact name or earlier pattern wins for
    every feature they match (the first match applies: agent/privacy.py `bounds_of`)."""
    from fnmatch import fnmatchcase

    p = cfg.fleet.privacy
    if p is None or not cfg.fleet.share_baseline:
        return []
    names = set()
    for s in cfg.sensors:
        if cfg.fleet.sensors is None or s.name in cfg.fleet.sensors:
            names.update(sensor_features(s))
    used = {n if n in p.bounds else next((k for k in p.bounds if fnmatchcase(n, k)), None) for n in names}
    out = []
    for key in p.bounds:
        if key in used:
            continue
        matched = sorted(n for n in names if fnmatchcase(n, key))
        why = (f"matches no feature of the sharing sensors (a typo? e.g. {', '.join(sorted(names)[:3])})" if not matched
               else f"never applies: {matched[0]}{' and the others it matches' if len(matched) > 1 else ''} take an "
                    "exact name or an earlier pattern first (the first match applies)")
        out.append((("fleet", "privacy", "bounds", key), why))
    return out


def private_detector(detector: dict, privacy, where: str) -> tuple[dict, dict]:
    """(detector statistics to share, privacy block) of a learned gaussian `state()`, noised.

    PoolingError, with what to do, when the baseline holds no clipped sums (learned before
    `fleet.privacy` was set), was clipped to other bounds than those configured now, or has
    features without usable bounds."""
    from models import registry
    from models.private_stats import release

    declared = {k: privacy.bounds_of(k) for k in detector.get("keys", [])}
    clip = (detector.get("params") or {}).get("clip")
    got = registry.from_state(detector).clipped() if clip is not None else None
    if got is None:
        raise PoolingError(f"{where}: baseline learned without fleet.privacy (no clipped sums): nothing is shared; "
                           "`pdm-agent baseline reset` to learn it again with the declared bounds")
    sums, unbounded = got
    if unbounded:
        raise PoolingError(f"{where}: {len(unbounded)} feature(s) have no usable bounds in fleet.privacy.bounds "
                           f"(log features need low > 0): {', '.join(unbounded[:6])}")
    changed = [k for k in sums.keys if declared[k] is None or list(map(float, declared[k])) != clip.get(k)]
    if changed:
        raise PoolingError(f"{where}: baseline was clipped to other bounds than fleet.privacy.bounds declares now "
                           f"({', '.join(changed[:6])}); `pdm-agent baseline reset` to learn it with the new ones")
    meas, scale = _noise(privacy, len(sums.keys))
    released = release(sums, meas, privacy.covariance)
    params = {k: v for k, v in detector["params"].items() if k != "clip"}
    shared = {"name": detector["name"], "version": detector["version"], "params": params,
              "keys": list(sums.keys), "n": released["n"], "mean": released["mean"].tolist(),
              "cov": released["cov"].tolist()}
    from importlib.metadata import version

    block = {"mechanism": privacy.mechanism, "epsilon": privacy.epsilon, "delta": privacy.delta, "unit": UNIT,
             "covariance": privacy.covariance, "bounds": {k: clip[k] for k in sums.keys},
             "sensitivity": released["sensitivity"], "scale": scale, "library": f"opendp {version('opendp')}"}
    return shared, block


def check_block(block, where: str) -> None:
    """PoolingError naming `where` and the key unless a share's `privacy` block states a usable
    Gaussian release: epsilon and delta, the noise scale and both sensitivities finite and above 0
    (the merge sizes its noise margin from them: a missing or altered one would hide noise)."""
    import math

    if not isinstance(block, dict):
        raise PoolingError(f"{where}: privacy is not an object")
    sens = block.get("sensitivity")
    fields = {"epsilon": block.get("epsilon"), "delta": block.get("delta"), "scale": block.get("scale"),
              "sensitivity.sum": sens.get("sum") if isinstance(sens, dict) else None,
              "sensitivity.outer": sens.get("outer") if isinstance(sens, dict) else None}
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise PoolingError(f"{where}: privacy.{key} is {value!r}: a private share states it as a number above 0 "
                               "(this share was altered or is not from pdm-agent)")
    if block.get("mechanism") != "gaussian" or block.get("covariance") not in ("full", "diagonal"):
        raise PoolingError(f"{where}: privacy mechanism {block.get('mechanism')!r}, covariance "
                           f"{block.get('covariance')!r}: this version merges gaussian, full or diagonal")


def _noise(privacy, d: int):
    import opendp.prelude as dp  # heavy: only when a private share is made

    from agent.privacy import measurement

    dp.enable_features("contrib")
    size = d + (d * (d + 1) // 2 if privacy.covariance == "full" else d)
    return measurement(dp, privacy.mechanism, privacy.epsilon, privacy.delta, size, 2 ** 0.5)


# -- the released share, kept ---------------------------------------------------------------------
# A private share is noised once per baseline and kept in storage.dir: noise drawn anew at every
# restart would release the same baseline again and again, and privacy losses add up.


def settings(cfg) -> dict | None:
    """fleet.privacy as plain data (None without it): what a kept share was released with."""
    return cfg.fleet.privacy.model_dump(mode="json") if cfg.fleet.privacy is not None else None


def kept_path(storage_dir: str | None, sensor: str) -> str | None:
    return os.path.join(storage_dir, f"fleet-share-{sensor}.json") if storage_dir else None


def kept_share(storage_dir: str | None, sensor: str, key) -> tuple[tuple, dict, dict | None] | None:
    """(key, share, privacy settings it was released with) kept for the baseline `key`
    ((learned_at, windows)), or None. The caller checks the share (a file edited by hand) and
    publishes it with `reused`."""
    path = kept_path(storage_dir, sensor)
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
    except (OSError, TypeError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("baseline") != list(key):
        return None
    return key, kept.get("payload"), kept.get("privacy")


def reused(payload: dict, released_with, cfg, sensor: str, log) -> dict:
    """A released share published again. It is this baseline's whatever fleet.privacy says now:
    other settings (epsilon, bounds, or none) apply to the next baseline, and releasing this one
    again would add its privacy loss (a warning says so). Device and machine type are labels, not
    data: a reload changing them relabels the same share."""
    if released_with != settings(cfg):
        log.warning("fleet.privacy changed: this baseline's share, already released, is published as it was; "
                    "the new settings apply to the next baseline (`pdm-agent baseline reset`)", sensor=sensor,
                    released_epsilon=(payload.get("privacy") or {}).get("epsilon"))
    return {**payload, "device": cfg.device.id, "machine_type": cfg.fleet.machine_type}


def keep_share(storage_dir: str | None, cfg, sensor: str, key, payload: dict, log) -> None:
    """Keep a private share for `kept_share` (an exact one is not kept: it is the same every time)."""
    path = kept_path(storage_dir, sensor)
    if cfg.fleet.privacy is None or path is None:
        return
    doc = {"baseline": list(key), "privacy": settings(cfg), "payload": payload}
    try:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:  # shared anyway; the next restart would draw new noise: say so
        log.warning("private share not kept: a restart will noise this baseline again", sensor=sensor,
                    path=path, reason=exc.strerror or str(exc))
