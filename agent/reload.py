"""SIGHUP reload of a running Service (agent/service.py): the new config is validated first, only
what changed is rebuilt (the publisher when `mqtt` or `device` changed, the sensors whose section
changed), and learned baselines survive. A config that cannot run is refused and the old one keeps
running; every outcome is recorded in `svc.last_reload` for the status topic.
"""

from __future__ import annotations

import time

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
    svc.last_reload = {"ts": iso_utc(time.time()), "result": "applied"}
    if new.logging != old.logging:
        from agent import logs

        logs.configure(new.logging.level, new.logging.format)
    if new.storage != old.storage:
        svc.log.warning("storage settings change on restart only; keeping the open outbox",
                         dir=str(old.storage.dir))
        svc.cfg = new.model_copy(update={"storage": old.storage})
    if new.mqtt != old.mqtt or new.device != old.device:
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
    same_rest = new.aggregates == old.aggregates and new.device == old.device
    for name, scfg in old_sensors.items():
        if same_rest and svc.models.retarget(svc.workers.get(name), scfg, new_sensors.get(name)):
            continue  # only the bundle changed: verified and swapped in place, or refused
        if new_sensors.get(name) != scfg or new.aggregates != old.aggregates or new.device != old.device:
            svc._stop_worker(name)
    for name, scfg in new_sensors.items():
        if name not in svc.workers and not svc._start_worker(scfg) and name in old_sensors:
            svc.log.error("keeping the previous configuration of this sensor", sensor=name)
            svc._start_worker(old_sensors[name])
    if (new.homeassistant != old.homeassistant or new.fleet != old.fleet
            or (new.homeassistant.enabled and old_sensors.keys() != new_sensors.keys())):
        svc.publisher.announce()  # Home Assistant discovery follows the new sensor list; fleet shares start
    svc.log.info("configuration reloaded", sensors=list(new_sensors))
    svc.notifier.ready(svc.summary())
