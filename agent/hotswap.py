"""Signed model bundles on a running agent: load, watch, swap without a restart, roll back.

Per sensor, `sensors[].detector.bundle` names either one bundle directory or a models directory
holding several (each a subdirectory with a manifest; the newest by its manifest's ``created``,
then by name, is the one to run). The main loop calls `ModelManager.poll()` about once a second;
every `poll_s` it fingerprints each watched path (names, sizes, mtimes, inodes) and, when that
changed and then stayed the same for one more poll (a copy in progress is not a new bundle), it:

1. verifies the signature against `models.trusted_keys` and every file's SHA-256
   (models/bundle.py), and checks the bundle's features are the ones this sensor computes;
2. builds the onnxruntime session and scores a typical vector (the scaler's mean) as a smoke test;
3. swaps it into the sensor pipeline between two windows. The swapped-in model stays guarded: a
   scoring error or a non-finite score rolls back to the model that ran before.

Anything that fails is refused: one log line with the reason, ``model_refused`` in the sensor's
entry on the status topic, and the running model keeps running. A failure at start-up falls
back to the streaming detector learned on the device. Writing a bundle: build it next to the
watched path and ``mv`` it into place (one rename), or copy it in; the settle poll covers both.

onnxruntime and cryptography are imported only when a bundle is configured.
"""

from __future__ import annotations

import json
import math
import os
import time

from models.features import FeatureSpec, feature_names


def _fingerprint(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    out = [(st.st_ino, st.st_mtime_ns)]
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            try:
                s = os.stat(os.path.join(root, name))
            except OSError:
                continue
            out.append((os.path.relpath(os.path.join(root, name), path), s.st_size, s.st_mtime_ns, s.st_ino))
    return tuple(out)


def candidate(path: str) -> str:
    """The bundle directory to run: `path` itself, or the newest bundle inside a models directory."""
    if os.path.isfile(os.path.join(path, "manifest.json")) or not os.path.isdir(path):
        return path
    found = []
    for name in os.listdir(path):
        sub = os.path.join(path, name)
        try:
            with open(os.path.join(sub, "manifest.json")) as f:
                created = str(json.load(f).get("created", ""))
        except (OSError, ValueError, AttributeError):
            continue
        found.append((created, name, sub))
    return max(found)[2] if found else path


def sensor_features(sensor_cfg) -> list[str]:
    return feature_names(FeatureSpec.of_sensor(sensor_cfg))


class Guarded:
    """A freshly swapped-in model that hands back to `fallback` the first time it fails."""

    def __init__(self, model, fallback, on_failure) -> None:
        self.model = model
        self.fallback = fallback
        self.on_failure = on_failure
        self.failed = False

    @property
    def current(self):
        """The model that scores now: the swapped-in one, or its fallback after a rollback."""
        return self.fallback if self.failed else self.model

    name = property(lambda self: self.current.name)
    version = property(lambda self: self.current.version)
    ready = property(lambda self: self.current.ready)
    # After a rollback the fallback learns again, and its baseline must be saved again.
    learns = property(lambda self: self.current.learns)

    def update(self, x, ts, exclude=None):
        # `exclude` is not passed on: what the guard runs is treated as a bundle, which learns
        # nothing, even after a rollback to a learning fallback (see `baseline`).
        if not self.failed:
            try:
                out = self.model.update(x, ts)
                if math.isfinite(out[0]):
                    return out
                reason = "non-finite score"
            except Exception as exc:
                reason = f"scoring failed: {exc}"
            self.failed = True
            self.on_failure(self, reason)
        return self.fallback.update(x, ts)

    def take_events(self) -> list[tuple[str, object]]:
        return []

    def baseline(self) -> None:
        # Reported like a bundle's for as long as the guard is in place, rollback included: the
        # status shows a bundle's fixed baseline and `baseline reset` refuses the sensor, as it
        # did before this interface was declared (behaviour kept; a rollback is rare and logged).
        return None

    def state(self) -> dict:
        return self.current.state()


class ModelManager:
    """Bundles per sensor: initial load, polling, swapping, refusals (see module docstring)."""

    def __init__(self, trusted_keys, log, poll_s: float = 2.0) -> None:
        self.trusted_keys = [str(k) for k in trusted_keys]
        self.log = log
        self.poll_s = poll_s
        self._watch: dict[str, dict] = {}  # sensor -> {path, pipeline, features, loaded_fp, pending}
        self._status: dict[str, dict] = {}
        self._next = 0.0

    # -- loading ----------------------------------------------------------------------------
    def _load(self, sensor: str, path: str, features: list[str]):
        """Verify, build and smoke-test a bundle; raise BundleError with the reason."""
        from models.bundle import BundleError, verify
        from models.onnx_runtime import BundleModel

        bundle = verify(candidate(path), self.trusted_keys)
        names = bundle.manifest["features"]["names"]
        if list(names) != list(features):
            missing = [n for n in features if n not in names][:3]
            extra = [n for n in names if n not in features][:3]
            raise BundleError(f"features do not match sensor {sensor!r} (bundle has {len(names)}, sensor "
                              f"{len(features)}; missing {missing}, unexpected {extra})")
        try:
            model = BundleModel.from_bundle(bundle)
            probe = dict(zip(names, bundle.manifest["scaler"]["mean"]))
            score = model.update(probe, time.time())[0]
        except Exception as exc:  # onnxruntime raises its own types for a broken graph
            raise BundleError(f"model does not load: {str(exc).splitlines()[0]}") from None
        if not math.isfinite(score):
            raise BundleError("model gives a non-finite score on a typical vector")
        return model, bundle

    def _refuse(self, sensor: str, path: str, reason: str) -> None:
        self.log.error("model bundle refused; keeping the running model", sensor=sensor, bundle=path, reason=reason)
        self._status.setdefault(sensor, {})["model_refused"] = {
            "bundle": path, "reason": reason, "ts": round(time.time(), 3)}

    def _accepted(self, sensor: str, model, bundle) -> None:
        entry = self._status.setdefault(sensor, {})
        entry.pop("model_refused", None)
        entry["bundle"] = {"path": bundle.path, "version": bundle.version, "variant":
                           bundle.manifest["model"].get("variant"), "key_id": bundle.key_id,
                           "loaded": round(time.time(), 3)}

    def initial(self, sensor_cfg):
        """The bundle model a sensor starts with, or None (no bundle, or refused: learn on the device)."""
        path = sensor_cfg.detector.bundle
        self._status.pop(sensor_cfg.name, None)
        if path is None:
            return None
        from models.bundle import BundleError

        path, features = str(path), sensor_features(sensor_cfg)
        fp = _fingerprint(path)
        try:
            model, bundle = self._load(sensor_cfg.name, path, features)
        except BundleError as exc:
            self._refuse(sensor_cfg.name, candidate(path), str(exc) + "; learning on the device instead")
            model = None
        else:
            self._accepted(sensor_cfg.name, model, bundle)
            self.log.info("model bundle loaded", sensor=sensor_cfg.name, model=model.model, bundle=bundle.path)
        self._watch[sensor_cfg.name] = {"path": path, "features": features, "loaded_fp": fp, "pending": None,
                                        "pipeline": None}
        return model

    def attach(self, sensor: str, pipeline) -> None:
        if sensor in self._watch:
            self._watch[sensor]["pipeline"] = pipeline

    def detach(self, sensor: str) -> None:
        self._watch.pop(sensor, None)

    def retarget(self, worker, old_cfg, new_cfg) -> bool:
        """On reload: when only `detector.bundle` changed, swap in place instead of restarting."""
        from agent.reload import only_bundle_changed

        if worker is None or not only_bundle_changed(old_cfg, new_cfg):
            return False
        worker.cfg = new_cfg
        worker.pipeline.cfg = new_cfg
        w = self._watch.get(new_cfg.name)
        if w is not None:
            w["path"], w["pending"] = str(new_cfg.detector.bundle), None
            self._swap(new_cfg.name, w, _fingerprint(w["path"]))
        return True

    # -- watching -------------------------------------------------------------------------------
    def poll(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self._next:
            return
        self._next = now + self.poll_s
        for sensor, w in list(self._watch.items()):
            fp = _fingerprint(w["path"])
            if fp == w["loaded_fp"]:
                w["pending"] = None
            elif fp != w["pending"]:
                w["pending"] = fp  # changed: wait one poll for it to settle
            else:
                self._swap(sensor, w, fp)

    def _swap(self, sensor: str, w: dict, fp: tuple) -> None:
        from models.bundle import BundleError

        w["loaded_fp"], w["pending"] = fp, None  # a refused bundle is not retried until it changes
        pipeline = w["pipeline"]
        if pipeline is None:
            return
        try:
            model, bundle = self._load(sensor, w["path"], w["features"])
        except BundleError as exc:
            self._refuse(sensor, candidate(w["path"]), str(exc))
            return
        previous = pipeline.model
        if isinstance(previous, Guarded):  # one level of history: what runs now
            previous = previous.current
        before = pipeline.model_name

        def rollback(guard: Guarded, reason: str, sensor=sensor, path=bundle.path) -> None:
            self._refuse(sensor, path, f"rolled back after the swap: {reason}")
            entry = self._status.get(sensor, {})
            entry["bundle"] = {**entry.get("bundle", {}), "version": guard.fallback.version,
                               "rolled_back": True}

        pipeline.model = Guarded(model, previous, rollback)
        self._accepted(sensor, model, bundle)
        self.log.info("model bundle swapped in", sensor=sensor, model=model.model, previous=before, bundle=bundle.path)

    def status(self, sensor: str) -> dict:
        """Extra fields for the sensor's entry on the status topic."""
        return dict(self._status.get(sensor, {}))
