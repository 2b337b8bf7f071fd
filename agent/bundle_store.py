"""Installed model bundles: `pdm-agent model install`, kept in the state directory, encrypted at rest.

`install` verifies a signed bundle (models/bundle.py) against `models.trusted_keys` and that its
features are the ones the sensor computes, then stores it under
``<storage.dir>/bundles/<sensor>/<created>_<name>-<version>``: with `storage.encrypt: true` one
sealed file (agent/sealed.py, role ``bundle``, bound to the sensor) holding every file of the bundle,
else a plain copy of the directory. Point `sensors[].detector.bundle` at
``<storage.dir>/bundles/<sensor>``: the agent runs the newest installed bundle (agent/hotswap.py).

Loading an encrypted bundle decrypts it in memory and verifies the signature and every file's
SHA-256 again: the plaintext never touches the disk, and a sealed file that was changed, or copied
from another sensor, is refused like a bundle whose signature fails.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys

from agent import sealed

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def store_dir(storage_dir: str, sensor: str) -> str:
    return os.path.join(storage_dir, "bundles", sensor)


def _entry_name(manifest: dict) -> str:
    raw = f"{manifest.get('created', '')}_{manifest['name']}-{manifest['version']}"
    return re.sub(r"[^A-Za-z0-9.:+_-]", "-", raw)


def install(bundle_dir: str, sensor_cfg, storage_dir: str, trusted_keys, sealer) -> str:
    """Verify and store a bundle for one sensor; returns the stored path. Raises BundleError."""
    from models.features import FeatureSpec, feature_names
    from models.bundle import MANIFEST, SIGNATURE, BundleError, verify

    bundle = verify(bundle_dir, [str(k) for k in trusted_keys])
    names, features = list(bundle.manifest["features"]["names"]), feature_names(FeatureSpec.of_sensor(sensor_cfg))
    if names != features:
        raise BundleError(f"features do not match sensor {sensor_cfg.name!r} (bundle has {len(names)}, "
                          f"sensor {len(features)})")
    files = dict(bundle.files)
    for name in (MANIFEST, SIGNATURE):
        with open(os.path.join(bundle_dir, name), "rb") as f:
            files[name] = f.read()
    verify(bundle_dir, [str(k) for k in trusted_keys], files=files)  # the bytes stored are the bytes verified
    dest = os.path.join(store_dir(storage_dir, sensor_cfg.name), _entry_name(bundle.manifest))
    if sealer is not None:
        return write_sealed(dest, files, sensor_cfg.name, sealer)
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, data in files.items():
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def write_sealed(dest: str, files: dict[str, bytes], sensor: str, sealer) -> str:
    """Every file of a bundle as one sealed archive at `dest`.sealed (role ``bundle``, bound to `sensor`),
    written atomically and fsynced; returns its path. Also used for bundles pushed over MQTT."""
    archive = json.dumps({n: base64.b64encode(d).decode() for n, d in sorted(files.items())}).encode()
    return sealed.write(dest, archive, "bundle", sensor, sealer)


def open_bundle(path: str, sensor: str, sealer, trusted_keys):
    """The verified `Bundle` at `path`: a bundle directory, or an encrypted installed bundle."""
    from models.bundle import BundleError, verify

    if not path.endswith(sealed.SUFFIX):
        return verify(path, trusted_keys)
    if sealer is None:
        raise BundleError(f"{path}: an encrypted bundle; it needs storage.encrypt: true and its key")
    try:
        with open(path, "rb") as f:
            blob = f.read()
        archive = json.loads(sealer.open("bundle", sensor, blob))
        files = {n: base64.b64decode(d, validate=True) for n, d in archive.items()}
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror or exc}") from None
    except (sealed.Refused, sealed.KeyProblem) as exc:
        raise BundleError(f"encrypted bundle refused: {exc}") from None
    except (ValueError, AttributeError, TypeError):
        raise BundleError(f"{path}: decrypted, but not a bundle archive") from None
    return verify(path, trusted_keys, files=files)


def cmd_install(args) -> int:
    from agent.cli_config import _config_path, _load_or_report
    from models.bundle import BundleError

    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    sensors = {s.name: (i, s) for i, s in enumerate(cfg.sensors)}
    if args.sensor not in sensors:
        print(f"--sensor {args.sensor}: not a sensor of {path} (sensors: {', '.join(sensors)})", file=sys.stderr)
        return EXIT_USAGE
    if not cfg.models.trusted_keys:
        print(f"models.trusted_keys: empty in {path}; a bundle is installed only when it verifies", file=sys.stderr)
        return EXIT_USAGE
    try:
        sealer = sealed.from_config(cfg.storage)
        sealed.check_key(str(cfg.storage.dir), sealer)
        stored = install(args.dir, sensors[args.sensor][1], str(cfg.storage.dir), cfg.models.trusted_keys, sealer)
    except (sealed.KeyProblem, BundleError) as exc:
        print(f"not installed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"not installed: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(f"installed {'(encrypted) ' if sealer else ''}{stored}")
    i, sensor_cfg = sensors[args.sensor]
    where = store_dir(str(cfg.storage.dir), args.sensor)
    if str(sensor_cfg.detector.bundle or "") != where:
        print(f"to run it: set sensors[{i}].detector.bundle: {where} (the newest installed bundle runs)")
    return EXIT_OK


def add_parser(msub) -> None:
    """`pdm-agent model install` under `pdm-agent model`."""
    p = msub.add_parser("install", help="verify a signed bundle and store it for a sensor (encrypted with "
                        "storage.encrypt)", description="Verify DIR against models.trusted_keys and store it in "
                        "<storage.dir>/bundles/<sensor>/, encrypted when storage.encrypt is true. Exit 0 "
                        "installed, 2 refused or invalid usage, 1 the state directory could not be written.")
    p.add_argument("dir", metavar="DIR", help="a signed bundle directory")
    p.add_argument("--config", metavar="FILE", help="the agent's config (storage, trusted keys, the sensor)")
    p.add_argument("--sensor", metavar="NAME", required=True, help="the sensor the bundle scores")
    p.set_defaults(func=cmd_install)
