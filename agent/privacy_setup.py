"""What `storage.encrypt` and `aggregates.privacy` need when sensors are built.

`sealer` runs first at start, before anything is read or written: it returns the `Sealer`
(agent/sealed.py) or raises `ConfigError` (exit 2) when the key is missing, too short, or not the
one the stored files were sealed with, so nothing learned is overwritten. `privatizer` gives each
sensor's aggregator the `Privatizer` (agent/privacy.py) for the current settings: one shared by
all sensors, built anew when a reload changes `aggregates.privacy`.
"""

from __future__ import annotations

from agent import sealed

_built: dict = {}  # settings (JSON) -> Privatizer: the OpenDP measurements are built once


def sealer(cfg, storage_dir: str, log):
    """The Sealer for `storage`, or None when encryption is off; `ConfigError` on a key problem."""
    from agent.config import ConfigError

    try:
        found = sealed.from_config(cfg.storage)
        sealed.check_key(storage_dir, found)
    except sealed.KeyProblem as exc:
        raise ConfigError([str(exc)]) from None
    if found is not None:
        log.info("learned baselines, installed and pushed bundles are encrypted at rest", key=found.source,
                 key_id=found.key_id.hex())
    return found


def privatizer(cfg, log):
    """The Privatizer for `aggregates.privacy`, or None when it is not set."""
    p = cfg.aggregates.privacy
    if p is None:
        return None
    key = p.model_dump_json()
    if key not in _built:
        from agent.privacy import Privatizer

        _built.clear()
        _built[key] = Privatizer(p, log)
        log.info("aggregates carry differential-privacy noise", mechanism=p.mechanism, epsilon=p.epsilon,
                 **({"delta": p.delta} if p.delta is not None else {}), library=_built[key].library)
    return _built[key]


def warnings(cfg) -> list[tuple[tuple, str]]:
    """`config check` warnings (key path, message): features privacy will not publish for want of
    bounds, and, with `storage.encrypt`, bundles named directly (they stay unencrypted)."""
    import os

    out = []
    if cfg.aggregates.privacy is not None:
        from agent.privacy import unpublished

        out += unpublished(cfg)
    from agent.fleet_privacy import unused_bounds

    out += unused_bounds(cfg)
    if not cfg.storage.encrypt:
        from agent.sealed import sealed_files

        sealed = sealed_files(str(cfg.storage.dir))
        if sealed:
            out.append((("storage", "encrypt"),
                        f"false, but {len(sealed)} encrypted file(s) are stored "
                        f"({sealed[0]}{' ...' if len(sealed) > 1 else ''}): "
                        "they are not read and the sensors learn anew (the files are kept); set encrypt: true "
                        "with the key they were sealed with to use them"))
    if cfg.storage.encrypt:
        out += _key_warnings(cfg.storage)
        installed = os.path.abspath(os.path.join(str(cfg.storage.dir), "bundles"))
        for i, s in enumerate(cfg.sensors):
            path = s.detector.bundle
            if path is not None and not os.path.abspath(str(path)).startswith(installed + os.sep):
                out.append((("sensors", i, "detector", "bundle"),
                            f"{path} is read as it is and stays unencrypted (storage.encrypt covers installed "
                            f"bundles: pdm-agent model install {path} --sensor {s.name})"))
    return out


def _key_warnings(storage) -> list[tuple[tuple, str]]:
    """With `storage.key_file` set: a key the agent would refuse at start (missing, too short, not the one
    the state directory's files were sealed with) is said by `config check`, which otherwise says OK.
    Without `key_file` the key is the systemd credential, which exists only inside the service: not checked.
    A key file this user may not read (root-only, read by the service user) is not judged either."""
    from agent.sealed import KeyProblem, check_key, from_config

    import os

    if storage.key_file is None:
        return []
    path = os.path.expandvars(os.path.expanduser(str(storage.key_file)))
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return []
    try:
        check_key(str(storage.dir), from_config(storage, environ={}))
    except KeyProblem as exc:
        return [(("storage", "key_file"), f"the agent will not start: {exc}")]
    return []
