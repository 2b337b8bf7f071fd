"""Where bundles pushed over MQTT live on the gateway, so a restart keeps running them.

Layout under `storage.dir`::

    pushed/<sensor>/<nonce>/     one staged or installed bundle: the files exactly as signed, or with
                                 `storage.encrypt: true` one file `bundle.sealed` holding them all
                                 (the sealed-bundle format of agent/bundle_store.py)
    pushed/<sensor>/current      symlink to the installed one; replaced with one atomic rename
    pushed/<sensor>/previous     symlink to the one installed before it (for a rollback)

A bundle is staged (written and fsynced) before it is verified and swapped in; only a bundle that
was swapped in becomes `current`, and the others are removed then. A power cut at any moment
leaves either the old `current` or the new one, never a half-written bundle in use. When a local
bundle (`detector.bundle`) is swapped in later, the pushed one is retired: the model installed
last, by either path, is the one a restart runs. When a pushed bundle fails after its swap and
is rolled back, `current` goes back to `previous` (or is removed when there is none), so a
restart does not bring the failed model back.

With `storage.encrypt: true` no file of a pushed bundle is written in plain: it is sealed before it
touches the disk, and loading decrypts it in memory and verifies it again (agent/bundle_store.py
`open_bundle`, reached through agent/hotswap.py `candidate`).
"""

from __future__ import annotations

import os
import shutil

ROOT = "pushed"
CURRENT = "current"
PREVIOUS = "previous"
SEALED = "bundle.sealed"  # the one file of a sealed pushed bundle (agent/bundle_store.py write_sealed)


def _holds_bundle(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "manifest.json")) or os.path.isfile(os.path.join(path, SEALED))


def sensor_dir(storage_dir: str, sensor: str) -> str:
    return os.path.join(storage_dir, ROOT, sensor)


def current(storage_dir: str | None, sensor: str) -> str | None:
    """The installed pushed bundle of `sensor` (a directory path), or None."""
    if not storage_dir:
        return None
    link = os.path.join(sensor_dir(storage_dir, sensor), CURRENT)
    target = os.path.realpath(link)
    return target if os.path.islink(link) and _holds_bundle(target) else None


def stage(storage_dir: str, sensor: str, name: str, files: dict[str, bytes], sealer=None) -> str:
    """Write `files` to pushed/<sensor>/<name>/ and fsync them, sealed into one file when `sealer`
    (agent/sealed.py) is set; returns the directory. OSError when the disk refuses."""
    path = os.path.join(sensor_dir(storage_dir, sensor), name)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path, mode=0o700)
    if sealer is not None:
        from agent.bundle_store import write_sealed

        write_sealed(os.path.join(path, "bundle"), files, sensor, sealer)  # -> SEALED
        return path
    for fname, data in files.items():
        with open(os.path.join(path, fname), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def commit(storage_dir: str, sensor: str, path: str) -> None:
    """Make the staged `path` the sensor's current bundle (atomic), then remove the others."""
    base = sensor_dir(storage_dir, sensor)
    old = current(storage_dir, sensor)
    if old is not None and os.path.basename(old) != os.path.basename(path):
        _link(base, PREVIOUS, os.path.basename(old))
    _link(base, CURRENT, os.path.basename(path))
    keep = {CURRENT, PREVIOUS, os.path.basename(path), os.path.basename(old or "")}
    for name in os.listdir(base):
        if name not in keep:
            discard(os.path.join(base, name))


def roll_back(storage_dir: str | None, sensor: str, failed: str) -> None:
    """The pushed bundle at `failed` was rolled back: `previous` becomes current again (or none)."""
    failed = os.path.realpath(failed)
    if os.path.basename(failed) == SEALED:  # a sealed bundle is named by its file; its directory is the entry
        failed = os.path.dirname(failed)
    if not storage_dir or current(storage_dir, sensor) != failed:
        return
    base = sensor_dir(storage_dir, sensor)
    prev = os.path.join(base, PREVIOUS)
    if _holds_bundle(prev):
        _link(base, CURRENT, os.readlink(prev))
        os.unlink(prev)
    else:
        discard(os.path.join(base, CURRENT))
    discard(failed)


def _link(base: str, name: str, target: str) -> None:
    """Point symlink base/name at target with one atomic rename, made durable."""
    tmp = os.path.join(base, f".{name}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(base, name))
    dfd = os.open(base, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a power cut
    finally:
        os.close(dfd)


def discard(path: str) -> None:
    try:
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)
    except OSError:
        pass  # best effort: an unused leftover never runs (only `current` does)


def retire(storage_dir: str | None, sensor: str) -> bool:
    """Forget the sensor's pushed bundle (a local bundle superseded it); True when there was one."""
    if not storage_dir or not os.path.isdir(sensor_dir(storage_dir, sensor)):
        return False
    shutil.rmtree(sensor_dir(storage_dir, sensor), ignore_errors=True)
    return True
