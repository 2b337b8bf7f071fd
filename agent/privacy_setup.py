"""What `storage.encrypt` and `aggregates.privacy` need at start, before anything is read or written.

`at_start` returns the `Sealer` (agent/sealed.py) and the `Privatizer` (agent/privacy.py) the
service hands to each sensor's pipeline, or raises `ConfigError` (exit 2) when the key is missing,
too short, or not the one the stored files were sealed with: nothing learned is overwritten then.
"""

from __future__ import annotations

from agent import sealed


def at_start(cfg, storage_dir: str, log):
    """(sealer or None, privatizer or None) for the config; `ConfigError` on a key problem."""
    from agent.config import ConfigError

    try:
        sealer = sealed.from_config(cfg.storage)
        sealed.check_key(storage_dir, sealer)
    except sealed.KeyProblem as exc:
        raise ConfigError([str(exc)]) from None
    if sealer is not None:
        log.info("learned baselines and installed bundles are encrypted at rest", key=sealer.source,
                 key_id=sealer.key_id.hex())
    privatizer = None
    if cfg.aggregates.privacy is not None:
        from agent.privacy import Privatizer

        privatizer = Privatizer(cfg.aggregates.privacy, log)
        p = cfg.aggregates.privacy
        log.info("aggregates carry differential-privacy noise", mechanism=p.mechanism, epsilon=p.epsilon,
                 **({"delta": p.delta} if p.delta is not None else {}), library=privatizer.library)
    return sealer, privatizer
