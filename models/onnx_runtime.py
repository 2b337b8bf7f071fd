"""Local inference for signed model bundles with onnxruntime, shaped for a gateway.

Sessions run on one intra-op thread (the agent has one worker thread per sensor; a thread pool per
session would only fight over two cores) and with the CPU memory arena off, so a session does not
keep a growing arena for a (1, F) input: RSS stays flat over days.

Two adapters:

- `OnnxDetector` implements the Detector protocol (models/base.py) over a verified bundle, so any
  code that scores detectors can score a bundle: ``learn`` is a no-op (a bundle is trained on a
  workstation and frozen), ``score`` is the raw score, ``explain`` the squared standardised
  deviation of each feature.
- `BundleModel` is what a sensor pipeline calls instead of a StreamingModel: the bundle's own
  calibration turns raw scores into [0, 1], and it is ready from the first window.

onnxruntime is imported when a session is built, never by importing this module.
"""

from __future__ import annotations

import math

import numpy as np

from models.base import DetectorBase
from models.bundle import kind
from models.calibration import Calibrator


def session(model: bytes):
    """An onnxruntime session for `model` (ONNX bytes): one thread, no CPU memory arena."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_cpu_mem_arena = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initialisers are noise on a gateway
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxDetector(DetectorBase):
    """A bundle's model behind the Detector protocol.

    Parameters
    ----------
    model : bytes
        ONNX graph, input ``x`` (N, F) float32 standardised features, output ``score`` (N, 1).
    features : list of str
        Feature names in column order.
    mean, scale : sequence of float
        The scaler: ``z = (x - mean) / scale``.
    name, version : str
        From the bundle manifest.
    """

    calibration = None  # the bundle's calibration (its manifest) is applied by BundleModel
    novelty = False

    def __init__(self, model: bytes, features, mean, scale, name: str = "onnx", version: str = "0") -> None:
        self.model = model
        self.features = list(features)
        self.mean = mean
        self.scale = scale
        self.name = name
        self.version = version
        self._mean = np.asarray(mean, dtype=np.float64)
        self._scale = np.asarray(scale, dtype=np.float64)
        self._session = session(model)
        self._input = self._session.get_inputs()[0].name
        self._row = np.zeros((1, len(self.features)), dtype=np.float32)

    def _standardise(self, x: dict[str, float]) -> np.ndarray:
        raw = np.array([x.get(k, math.nan) for k in self.features], dtype=np.float64)
        z = (raw - self._mean) / self._scale
        return np.where(np.isfinite(z), z, 0.0)  # a missing or non-finite feature reads as typical

    def score_batch(self, z: np.ndarray) -> np.ndarray:
        """Raw scores of standardised rows z (n, F)."""
        out = self._session.run(None, {self._input: np.asarray(z, dtype=np.float32)})[0]
        return out.reshape(-1).astype(np.float64)

    def learn(self, x: dict[str, float]) -> None:
        """Bundles are trained offline: nothing is learned on the device."""

    def score(self, x: dict[str, float]) -> float:
        self._row[0] = self._standardise(x)
        return float(self._session.run(None, {self._input: self._row})[0].reshape(-1)[0])

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        z = self._standardise(x)
        return {k: float(v * v) for k, v in zip(self.features, z) if k in x}

    def state(self) -> dict:
        return {"name": self.name, "version": self.version, "features": self.features,
                "mean": list(map(float, self._mean)), "scale": list(map(float, self._scale))}

    @classmethod
    def from_state(cls, state: dict) -> "OnnxDetector":
        raise ValueError("an ONNX detector is restored from its signed bundle, not from saved state")


class BundleModel:
    """A verified bundle, driven like a StreamingModel: ``update(x, ts) -> (score01, ready, reason)``.

    Raises nothing on odd input: non-finite features read as typical. A non-finite *raw score* is
    reported as NaN so the hot-swap guard (agent/hotswap.py) can roll back.
    """

    learns = False  # frozen and signed: the pipeline saves no state for it

    def __init__(self, detector: OnnxDetector, calibrator: Calibrator, path: str = "") -> None:
        self.detector = detector
        self.calibrator = calibrator
        self.path = path
        self.name = detector.name
        self.version = detector.version
        self.ready = True
        self.last_raw: float = 0.0

    @classmethod
    def from_bundle(cls, bundle) -> "BundleModel":
        """From a verified `models.bundle.Bundle`."""
        m = bundle.manifest
        det = OnnxDetector(bundle.model_bytes, m["features"]["names"], m["scaler"]["mean"], m["scaler"]["scale"],
                           name=kind(m["name"]), version=m["version"])
        return cls(det, Calibrator.from_dict(m["calibration"]), bundle.path)

    @property
    def model(self) -> str:
        return f"{self.name}@{self.version}"

    def update(self, x: dict[str, float], ts: float, exclude: str | None = None):
        """models/base.ScoringModel.update; `exclude` is ignored: a bundle learns nothing."""
        raw = self.detector.score(x)
        self.last_raw = raw
        if not math.isfinite(raw):
            return math.nan, True, []
        top = sorted(self.detector.explain(x).items(), key=lambda kv: kv[1], reverse=True)[:3]
        return self.calibrator(raw), True, [(k, float(x[k]), round(c, 4)) for k, c in top]

    def take_events(self) -> list[tuple[str, object]]:
        return []  # no baseline on the device, so nothing happens to one

    def baseline(self) -> None:
        return None  # the bundle's calibration was fitted off the device

    def state(self) -> dict:
        return {"bundle": self.path, "model": self.model}
