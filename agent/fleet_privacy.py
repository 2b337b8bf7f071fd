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

from models.pooling import PoolingError

UNIT = "window"


def clip_bounds(cfg, sensor_cfg) -> dict[str, list[float]] | None:
    """The gaussian detector's `clip` for a sensor: {feature: [low, high]} for every feature the
    sensor computes that has declared bounds, when `fleet.privacy` applies to it; else None."""
    from models.features import FeatureSpec, feature_names  # not agent.hotswap: it imports what imports this

    fleet = cfg.fleet
    if fleet.privacy is None or not fleet.share_baseline or not fleet.covers(sensor_cfg.name):
        return None
    out = {}
    for name in feature_names(FeatureSpec.of_sensor(sensor_cfg)):
        bound = fleet.privacy.bounds_of(name)
        if bound is not None:
            out[name] = [float(bound[0]), float(bound[1])]
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


def _noise(privacy, d: int):
    import opendp.prelude as dp  # heavy: only when a private share is made

    from agent.privacy import measurement

    dp.enable_features("contrib")
    size = d + (d * (d + 1) // 2 if privacy.covariance == "full" else d)
    return measurement(dp, privacy.mechanism, privacy.epsilon, privacy.delta, size, 2 ** 0.5)
