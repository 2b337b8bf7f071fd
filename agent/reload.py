"""SIGHUP reload of a running Service (agent/service.py): the new config is validated first, only
what changed is rebuilt (the publisher when `mqtt` or `device` changed, the sensors whose section
changed), and learned baselines survive. A config that cannot run is refused and the old one keeps
running; every outcome is recorded in `svc.last_reload` for the status topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent.config import ConfigError, load_config
from agent.records import iso_utc


def reload(svc) -> None:
    """SIGHUP: validate first; rebuild only what changed; learned baselines survive."""
    svc.notifier.reloading()
    try:
        new = load_config(svc.config_path)
    except ConfigError as exc:
        for line in exc.errors:
            svc.log.error("reload refused, invalid config; keeping the running one", error=line)
        svc.last_reload = {"ts": iso_utc(time.time()), "result": "refused", "errors": list(exc.errors)[:5]}
        svc.notifier.ready(svc.summary())
        return
    old, svc.cfg = svc.cfg, new
    plan = plan_reload(old, new)
    svc.last_reload = {"ts": iso_utc(time.time()), "result": "applied"}
    if plan.logging:
        from agent import logs

        logs.configure(new.logging.level, new.logging.format)
    if plan.keep_storage:
        svc.log.warning("storage settings change on restart only; keeping the open outbox",
                         dir=str(old.storage.dir))
        svc.cfg = new.model_copy(update={"storage": old.storage})
    if plan.publisher:
        try:
            publisher = svc._make_publisher()  # before stopping the old one: TLS files, password
        except Exception as exc:
            svc.cfg = old
            svc.log.error("reload refused, mqtt settings unusable; keeping the running config",
                           error=str(exc))
            svc.last_reload = {"ts": iso_utc(time.time()), "result": "refused", "errors": [str(exc)]}
            svc.notifier.ready(svc.summary())
            return
        svc.log.info("mqtt settings changed; reconnecting")
        svc.publisher.stop()
        svc.publisher = publisher
        svc.publisher.start()
    elif svc.publisher is not None:
        svc.publisher.reread_password()  # a rotated password_file, same settings
    old_sensors = {s.name: s for s in old.sensors}
    new_sensors = {s.name: s for s in new.sensors}
    svc.models.trusted_keys = [str(k) for k in new.models.trusted_keys]
    for name in plan.swap_bundle:
        if not svc.models.retarget(svc.workers.get(name), old_sensors[name], new_sensors[name]):
            svc._stop_worker(name)  # not running: started below with its new configuration
    for name in plan.stop:
        svc._stop_worker(name)
    for name, scfg in new_sensors.items():
        if name not in svc.workers and not svc._start_worker(scfg) and name in old_sensors:
            svc.log.error("keeping the previous configuration of this sensor", sensor=name)
            svc._start_worker(old_sensors[name])
    _say_prior_not_applied(svc, old, new, plan)
    _follow_share_privacy(svc, new)
    if plan.announce:
        svc.publisher.announce()  # Home Assistant discovery follows the new sensor list; fleet shares start
    svc.log.info("configuration reloaded", sensors=list(new_sensors))
    svc.notifier.ready(svc.summary())


def _say_prior_not_applied(svc, old, new, plan) -> None:
    """A changed fleet.prior, machine_type or prior_windows is read only when a sensor starts:
    say so for the sensors this reload left running, rather than log a bare 'reloaded'."""
    keys = ("prior", "machine_type", "prior_windows")
    changed = [k for k in keys if getattr(old.fleet, k) != getattr(new.fleet, k)]
    kept = [s.name for s in new.sensors if s.name in svc.workers and s.name not in plan.start]
    if changed and kept:
        svc.log.warning("fleet prior settings changed; sensors already running keep their baseline (a prior is "
                        "read only when a sensor starts without a saved baseline of this machine)",
                        changed=[f"fleet.{k}" for k in changed], sensors=kept)


def _follow_share_privacy(svc, new) -> None:
    """fleet.privacy's bounds apply to what a sensor learns next (its current baseline was summed
    with the old ones, or none): a running sensor takes them for its next `baseline reset`, and the
    share says why it is withheld until then (agent/fleet_privacy.py)."""
    from agent.fleet_privacy import clip_bounds

    for scfg in new.sensors:
        worker = svc.workers.get(scfg.name)
        if worker is not None:
            worker.pipeline.clip = clip_bounds(new, scfg)


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload from `old` to `new` does (`plan_reload`); sensors by name, in config order.

    `logging`: reconfigure logging. `keep_storage`: storage changed, which applies on restart only
    (the open outbox is kept, with a warning). `publisher`: mqtt or device changed, so a new
    publisher replaces the old one (otherwise the password file is re-read). `swap_bundle`: only the
    sensor's `detector.bundle` changed: the bundle is swapped in place and the learned state and
    queues survive. `stop`: sensors removed or changed (or all, when aggregates or device changed);
    the changed ones start again with their new section. `start`: sensors that will (re)start.
    `announce`: Home Assistant discovery and fleet shares are published again.
    """

    logging: bool = False
    keep_storage: bool = False
    publisher: bool = False
    swap_bundle: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    announce: bool = False


def only_bundle_changed(old_cfg, new_cfg) -> bool:
    """Whether a sensor's sections differ in `detector.bundle` alone (both set)."""
    if new_cfg is None or new_cfg.detector.bundle is None or old_cfg.detector.bundle is None:
        return False
    if old_cfg.model_copy(update={"detector": new_cfg.detector}) != new_cfg:
        return False
    return old_cfg.detector.model_copy(update={"bundle": new_cfg.detector.bundle}) == new_cfg.detector


def plan_reload(old, new) -> ReloadPlan:
    """The plan of a reload between two validated configurations; pure (tests/cases/reload/)."""
    old_sensors = {s.name: s for s in old.sensors}
    new_sensors = {s.name: s for s in new.sensors}
    same_rest = new.aggregates == old.aggregates and new.device == old.device
    swap, stop = [], []
    for name, scfg in old_sensors.items():
        if same_rest and only_bundle_changed(scfg, new_sensors.get(name)):
            swap.append(name)
        elif new_sensors.get(name) != scfg or not same_rest:
            stop.append(name)
    start = [n for n in new_sensors if n not in old_sensors or n in stop]
    ha = new.homeassistant
    return ReloadPlan(
        logging=new.logging != old.logging,
        keep_storage=new.storage != old.storage,
        publisher=new.mqtt != old.mqtt or new.device != old.device,
        swap_bundle=tuple(swap), stop=tuple(stop), start=tuple(start),
        announce=(ha != old.homeassistant or new.fleet != old.fleet  # fleet: shares (agent/fleet_share.py)
                  or (ha.enabled and old_sensors.keys() != new_sensors.keys())),
    )
