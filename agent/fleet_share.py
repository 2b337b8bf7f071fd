"""Federated baselines on the agent: what is shared, how shares are merged, how a prior is loaded.

With `fleet.share_baseline: true` the agent publishes, per sensor, the sufficient statistics of
the baseline it learned (docs/federated.md), retained, QoS 1, on

    <mqtt.topic_prefix>/fleet/<fleet.machine_type>/baseline/<device.id>/<sensor>

after every connect and whenever a baseline finishes learning. The payload (`share_payload`) holds
the detector's count, mean and covariance in its log-feature space, the calibration's median and
tail, and who/when: never a sample, a window, a feature vector or a score (the streaming model's
pools and leave-one-out windows stay on the device). `merge` pools N shares into one fleet prior
(models/pooling.py: exact, count-weighted); `pdm-agent fleet merge` signs it as a bundle. With
`fleet.prior: DIR` a sensor starts from that prior (models/prior.py), verified against
`models.trusted_keys`; a prior that fails is refused with the reason and the sensor learns on
the device as without it.
"""

from __future__ import annotations

import json
import time

from agent.fleet_privacy import check_block, keep_share, kept_share, reused, settings
from agent.topics import fleet_baseline as topic

from models.pooling import (NOISE_MARGIN, PoolingError, detector_state, learned_baseline, pool, pool_calibration,
                            pooled_noise, private_calibration, psd, stats_of)
from models.private_stats import noise_sd
from models.prior import FORMAT as PRIOR_FORMAT, KIND as PRIOR_KIND, check as check_prior, prior_model

KIND, FORMAT = "fleet-baseline", 1
PRIOR_FILE = "prior.json"
FIT_WINDOWS = 30  # windows scored under a prior before its fit is judged (`FleetShare._prior_fit`)
# The only keys a share carries (tests assert this: nothing else, in particular no windows).
SHARE_KEYS = {"kind", "format", "device", "sensor", "machine_type", "learned_at", "agent_version", "window_s",
              "detector", "calibration", "privacy"}
CALIBRATION_KEYS = ("median", "tail", "quantile", "alarm_ratio", "method", "n")
PRIVATE_CALIBRATION_KEYS = ("quantile", "alarm_ratio")  # a private share's: no quantile of scores


def window_s(sensor_cfg) -> float:
    """Seconds between a sensor's feature vectors, as agent/baseline.py `cadence_s` computes them
    (not imported from there: that module imports this one for `config check`)."""
    from drivers.base import driver_for

    cadence = driver_for(sensor_cfg.protocol).cadence_s(sensor_cfg)
    return float(cadence) if cadence is not None else (sensor_cfg.window.hop or sensor_cfg.window.size) / float(
        sensor_cfg.sample_rate)


def share_payload(model_state: dict, *, device: str, sensor: str, machine_type: str, window_s: float,
                  agent_version: str, learned_at: str | None, privacy=None) -> dict:
    """What a sensor shares (module docstring), from its streaming model's `state()`;
    PoolingError when that baseline cannot or must not be shared (not ready, not gaussian, from
    a prior). With `privacy` (`fleet.privacy`, agent/fleet_privacy.py) the statistics are noised
    clipped sums, the calibration keeps only its settings, and `privacy` says how."""
    detector, calibration = learned_baseline(model_state, f"sensor {sensor}")
    keep = ("name", "version", "params", "keys", "n", "mean", "cov")  # the sufficient statistics, nothing else
    block = None
    if privacy is not None:
        from agent.fleet_privacy import private_detector

        detector, block = private_detector(detector, privacy, f"sensor {sensor}")
    return {"kind": KIND, "format": FORMAT, "device": device, "sensor": sensor, "machine_type": machine_type,
            "learned_at": learned_at, "agent_version": agent_version, "window_s": window_s,
            "detector": {k: detector[k] for k in keep},
            "calibration": {k: calibration[k] for k in (PRIVATE_CALIBRATION_KEYS if block else CALIBRATION_KEYS)},
            "privacy": block}


def read_share(doc, where: str):
    """(statistics, calibration dict, doc) of one share; PoolingError naming `where` otherwise."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise PoolingError(f"{where}: not a shared fleet baseline (kind {KIND!r})")
    if doc.get("format") != FORMAT:
        raise PoolingError(f"{where}: share format {doc.get('format')!r}; this version reads {FORMAT}")
    stats = stats_of(doc.get("detector"), where)
    cal = doc.get("calibration")
    private = doc.get("privacy") is not None
    need = PRIVATE_CALIBRATION_KEYS if private else ("median", "tail", "quantile", "alarm_ratio")
    if not isinstance(cal, dict) or not all(k in cal for k in need):
        raise PoolingError(f"{where}: calibration missing or incomplete")
    if private:
        check_block(doc["privacy"], where)
    return stats, cal, doc


def merge(shares: list[tuple[str, dict]], machine_type: str | None = None, created: str | None = None,
          tail_ratio: float | None = None) -> dict:
    """One fleet prior (models/prior.py format) from shares given as (where, document) pairs.

    Refuses (PoolingError, with the share named) mixed machine types, the same device/sensor
    twice (its windows would count twice), private and exact shares together, and anything
    models/pooling.py cannot pool exactly. Private shares (`fleet.privacy`) are pooled as
    released and the pooled covariance projected to the nearest positive semi-definite one; the
    prior's calibration then comes from the statistics alone (models/pooling.py
    `private_calibration`, `tail_ratio`)."""
    if not shares:
        raise PoolingError("no shared baselines to merge")
    parts, seen = [], {}
    for where, doc in shares:
        stats, cal, doc = read_share(doc, where)
        mtype = doc.get("machine_type")
        if machine_type is None:
            machine_type = mtype
        if mtype != machine_type:
            raise PoolingError(f"{where}: machine_type {mtype!r}, not {machine_type!r}: only alike machines pool")
        who = (doc.get("device"), doc.get("sensor"))
        if who in seen:
            raise PoolingError(f"{where}: {who[0]}/{who[1]} is also in {seen[who]}: its windows would count twice")
        seen[who] = where
        parts.append((where, stats, cal, doc))
    private = [p[3].get("privacy") is not None for p in parts]
    if any(private) and not all(private):
        exact = [p[0] for p, x in zip(parts, private) if not x][:3]
        raise PoolingError(f"private and exact shares cannot be merged into one prior (exact: {', '.join(exact)}): "
                           "set fleet.privacy on every agent of the machine type, or on none")
    kinds = {p[0]: p[3]["privacy"].get("covariance") for p in parts if p[3].get("privacy") is not None}
    if len(set(kinds.values())) > 1:  # a diagonal share's zero covariances would pull the pool's towards 0
        raise PoolingError("shares with covariance 'full' and 'diagonal' cannot be merged into one prior ("
                           + ", ".join(f"{w}: {c}" for w, c in list(kinds.items())[:4])
                           + "): set the same fleet.privacy.covariance on every agent of the machine type")
    pooled = pool([p[1] for p in parts], [p[0] for p in parts])
    privacy = None
    if all(private):
        # read_share checked every privacy block, so scale and sensitivities are usable numbers
        noised = [(p[1], noise_sd(p[1].n, p[3]["privacy"]["scale"], p[3]["privacy"]["sensitivity"])) for p in parts]
        noise = pooled_noise(noised)
        pooled = psd(pooled, noise)
        calibration = private_calibration([(p[1], p[2], sd) for p, (_, sd) in zip(parts, noised)], tail_ratio)
        privacy = {"unit": "window", "mechanism": "gaussian", "calibration": calibration["method"],
                   "noise_sd": {"mean": noise[0], "variance": noise[1]}, "noise_margin_sd": NOISE_MARGIN,
                   "shares": [{"device": p[3].get("device"), "sensor": p[3].get("sensor"),
                               **{k: p[3]["privacy"].get(k) for k in ("epsilon", "delta", "covariance")}}
                              for p in parts]}
    else:
        calibration = pool_calibration([(p[1], p[2]) for p in parts])
    return {"kind": PRIOR_KIND, "format": PRIOR_FORMAT, "machine_type": machine_type,
            "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "detector": detector_state(pooled), "calibration": calibration,
            "machines": [{"device": p[3].get("device"), "sensor": p[3].get("sensor"), "n": p[1].n,
                          "window_s": p[3].get("window_s")} for p in parts],
            "privacy": privacy}


def load_prior(path: str, trusted_keys) -> tuple[dict, str]:
    """(prior document, signer key id) of a signed prior bundle; BundleError or PoolingError with
    the reason (bad signature, a bundle that is not a prior, an unreadable prior)."""
    from models.bundle import BundleError, verify

    bundle = verify(path, [str(k) for k in trusted_keys])
    if bundle.manifest["model"].get("kind") != PRIOR_KIND:
        raise BundleError(f"{path}: a model bundle, not a fleet prior (model bundles go in sensors[].detector.bundle)")
    try:
        doc = json.loads(bundle.model_bytes)
    except ValueError as exc:
        raise PoolingError(f"{path}/{PRIOR_FILE}: not JSON ({exc})") from None
    check_prior(doc, path)
    return doc, bundle.key_id


def describe(cfg, sensor_cfg) -> str | None:
    """`config check`'s line about a sensor's fleet prior (verified as the agent will), or None."""
    if cfg.fleet.prior is None or not cfg.fleet.covers(sensor_cfg.name) or sensor_cfg.detector.bundle:
        return None

    class _Quiet:
        def info(self, *a, **k): ...

        error = info

    fleet = FleetShare(_Quiet(), "")
    model = fleet.prior_model(cfg, sensor_cfg)
    entry = fleet.status(sensor_cfg.name)["fleet"]
    if model is None:
        return (f"warning: fleet.prior: refused for {sensor_cfg.name}: {entry['prior_refused']['reason']}; "
                "it learns its own baseline instead")
    p = entry["prior"]
    return (f"{sensor_cfg.name}: starts from the fleet prior {p['path']} ({p['machine_type']}, {p['windows']} windows "
            f"of {p['machines']} machine(s), signed by key {p['key_id']}): learned alerts from the first window")


class FleetShare:
    """The service's side: prior models for new sensors, retained shares, status entries."""

    def __init__(self, log, agent_version: str, storage_dir: str | None = None) -> None:
        self.log = log
        self.agent_version = agent_version
        self.storage_dir = storage_dir  # where private shares are kept (agent/fleet_privacy.py `kept_share`)
        self._status: dict[str, dict] = {}
        self._cache: dict[str, tuple] = {}  # sensor -> ((baseline key, topic, privacy settings), topic, payload bytes)
        self._held: dict[str, tuple] = {}  # sensor -> (baseline key, private share released, privacy settings)

    def status(self, sensor: str, pipeline=None) -> dict:
        """`fleet` in the sensor's status entry, when there is something to say; with the sensor's
        `pipeline`, how well a prior fits this machine (`_prior_fit`)."""
        entry = self._status.get(sensor)
        if entry and "prior" in entry and pipeline is not None:
            self._prior_fit(sensor, entry, pipeline)
        return {"fleet": dict(entry)} if entry else {}

    def _prior_fit(self, sensor: str, entry: dict, pipeline) -> None:
        """A prior-started sensor adapts only on windows scoring below the warning level. When, after
        FIT_WINDOWS windows, fewer than half were, the prior does not fit what this machine does now:
        say so once (log and status `fleet.prior_fit`), with what to do, instead of bare warnings."""
        baseline, scored = pipeline.baseline(), pipeline.stats.windows
        if baseline.get("windows") or "adapted" not in baseline or scored < FIT_WINDOWS or entry.get("prior_fit"):
            return
        if not getattr(pipeline.model, "adapt_half_life_s", None):
            return  # adaptation off: nothing is learned, whatever the scores
        if baseline["adapted"] * 2 < scored:
            entry["prior_fit"] = {
                "windows": scored, "below_warning": baseline["adapted"],
                "note": "most windows score at or above the warning level under the fleet prior: this machine has "
                        "a fault, or differs from the donors (speed, load, mounting); if it is healthy, remove "
                        "fleet.prior and run `pdm-agent baseline reset` to learn its own baseline"}
            self.log.warning("fleet prior does not fit this machine", sensor=sensor, windows=scored,
                             below_warning=baseline["adapted"], note=entry["prior_fit"]["note"])

    # -- starting from a prior ------------------------------------------------------------------
    def prior_model(self, cfg, sensor_cfg):
        """The model a sensor starts with from `fleet.prior`, or None (no prior, or refused)."""
        from agent.fleet_privacy import sensor_features
        from models.bundle import BundleError

        fleet, name = cfg.fleet, sensor_cfg.name
        self._status.pop(name, None)
        if fleet.prior is None or not cfg.fleet.covers(name) or sensor_cfg.detector.bundle is not None:
            return None
        path = str(fleet.prior)
        try:
            doc, key = load_prior(path, cfg.models.trusted_keys)
            if doc["machine_type"] != fleet.machine_type:
                raise PoolingError(f"prior for machine_type {doc['machine_type']!r}, this agent is "
                                   f"{fleet.machine_type!r}")
            keys, features = set(doc["detector"]["keys"]), set(sensor_features(sensor_cfg))
            if keys != features:
                raise PoolingError(f"features do not match sensor {name!r} (prior has {len(keys)}, sensor "
                                   f"{len(features)}; missing {sorted(features - keys)[:3]}, unexpected "
                                   f"{sorted(keys - features)[:3]})")
            d = sensor_cfg.detector
            model = prior_model(doc, learn_seconds=d.learn_seconds, adapt_half_life_s=d.adapt_half_life_s,
                                cadence_s=window_s(sensor_cfg), prior_windows=fleet.prior_windows,
                                where=path, drift_large_at=sensor_cfg.alerts.alarm,
                                drift_clear_below=sensor_cfg.alerts.warning)
        except (BundleError, PoolingError) as exc:
            self.log.error("fleet prior refused; learning on the device", sensor=name, prior=path, reason=str(exc))
            self._status[name] = {"prior_refused": {"path": path, "reason": str(exc), "ts": round(time.time(), 3)}}
            return None
        machines = doc.get("machines") or []
        self._status[name] = {"prior": {"path": path, "machine_type": doc["machine_type"], "key_id": key,
                                        "created": doc.get("created"), "machines": len(machines),
                                        "windows": doc["detector"]["n"]}}
        self.log.info("started from the fleet prior: scoring from the first window", sensor=name, prior=path,
                      machines=len(machines), windows=doc["detector"]["n"], key_id=key)
        return model

    # -- sharing -----------------------------------------------------------------------------------
    def messages(self, cfg, workers: dict) -> list[tuple[str, bytes]]:
        """(topic, payload) of every ready baseline to share, for the publisher's retained set. With
        fleet.privacy, a baseline that must not be shared gets an empty payload: it clears what the
        sensor shared before (an exact share, before privacy was set) from the broker."""
        if not cfg.fleet.share_baseline:
            return []
        from models.streaming import StreamingModel

        out = []
        for name, worker in list(workers.items()):
            model = worker.pipeline.model
            if not cfg.fleet.covers(name) or not isinstance(model, StreamingModel):
                continue
            baseline = model.baseline()
            if baseline["state"] == "suspect":
                self._not_shared(name, f"baseline is suspect: {baseline['reason']}")
            if baseline["state"] != "ready" or not baseline["windows"]:
                continue
            # What the share depends on: the baseline, its topic and the privacy settings (a reload
            # can change the last two).
            stamp = ((baseline["learned_at"], baseline["windows"]),
                     topic(cfg.mqtt.topic_prefix, cfg.fleet.machine_type, cfg.device.id, name), settings(cfg))
            cached = self._cache.get(name)
            if cached is None or cached[0] != stamp:
                if cached is not None and cached[1] != stamp[1]:  # a new device.id or machine_type: the
                    out.append((cached[1], b""))  # share must not stay on the old topic too (counted twice)
                cached = self._payload(cfg, name, worker, model, stamp, baseline["learned_at"])
                if cached is None:
                    continue
            out.append(cached[1:])
        return out

    def _payload(self, cfg, name, worker, model, stamp, learned_at):
        if not worker.lock.acquire(timeout=2.0):
            return None  # the pipeline is busy; the next announce tries again
        try:
            state = model.state()
        finally:
            worker.lock.release()
        key, where, _ = stamp
        try:
            held = self._held.get(name)  # in memory too: a file that could not be written must not re-noise
            if held is None or held[0] != key:
                held = self._checked(kept_share(self.storage_dir, name, key), name)
            if held is not None:
                payload = reused(held[1], held[2], cfg, name, self.log)
            else:
                payload = share_payload(state, device=cfg.device.id, sensor=name, machine_type=cfg.fleet.machine_type,
                                        window_s=window_s(worker.cfg), agent_version=self.agent_version,
                                        learned_at=learned_at, privacy=cfg.fleet.privacy)
                keep_share(self.storage_dir, cfg, name, key, payload, self.log)
                held = (key, payload, settings(cfg)) if payload["privacy"] is not None else None
            if held is not None:
                self._held[name] = held
        except PoolingError as exc:
            self._not_shared(name, str(exc), cleared=cfg.fleet.privacy is not None)
            if cfg.fleet.privacy is None:
                return None
            self._cache[name] = (stamp, where, b"")
            return self._cache[name]
        data = json.dumps(payload, separators=(",", ":")).encode()
        limit = cfg.mqtt.max_packet_bytes
        if limit is not None and len(data) + len(where) + 16 > limit:
            return self._not_shared(name, f"the share is {len(data)} bytes, over mqtt.max_packet_bytes {limit}")
        self._cache[name] = (stamp, where, data)
        p = payload["privacy"]
        private = None if p is None else {k: p[k] for k in ("mechanism", "epsilon", "delta", "covariance")}
        entry = {k: v for k, v in self._status.get(name, {}).items() if k != "not_shared"}
        self._status[name] = {**entry, "shared": {"topic": where, "windows": payload["detector"]["n"],
                                                  "learned_at": learned_at, "bytes": len(data), "privacy": private}}
        self.log.info("baseline shared with the fleet", sensor=name, topic=where, windows=payload["detector"]["n"],
                      privacy=private)
        return self._cache[name]

    def _checked(self, held, name):
        """A kept share edited by hand is ignored, with a warning: the baseline is noised anew."""
        try:
            if held is not None:
                read_share(held[1], f"kept share of {name}")
                if held[1].get("privacy") is None:
                    raise PoolingError(f"kept share of {name}: not a private share")
        except PoolingError as exc:
            self.log.warning("kept private share unreadable: this baseline is noised again (its privacy losses add "
                             "up)", sensor=name, reason=str(exc))
            return None
        return held

    def _not_shared(self, name, reason, cleared: bool = False):
        if self._status.get(name, {}).get("not_shared", {}).get("reason") != reason:
            self.log.warning("baseline not shared with the fleet", sensor=name, reason=reason,
                             **({"retained_share": "cleared from the broker"} if cleared else {}))
        entry = {k: v for k, v in self._status.get(name, {}).items() if not (cleared and k == "shared")}
        self._status[name] = {**entry, "not_shared": {"reason": reason}}
        return None
