"""`pdm-agent model train`: healthy feature rows in, a bundle (and a report) out.

Steps: split the healthy rows in time order (the last `holdout` fraction is held back), fit the
scaler and the detector on the rest, build the variants (fp32, int8, pruned, distilled), measure
each on the held-back healthy rows against faulty rows (given, or synthetic), gate them, pick one
by the rule in models/training/compress.py, calibrate its scores on the held-back healthy rows,
and write the bundle (unsigned: `pdm-agent model sign` signs it, ideally on another machine).

Synthetic faulty rows, when no faulty recording is given: each held-back healthy row with one to
three features pushed 3 to 6 healthy standard deviations up or down. They stand for "a few
features leave their healthy range", which is how developing faults look in condition features.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from models.bundle import kind
from models.calibration import Calibrator
from models.training import compress, detectors
from models.training.data import DataError, Dataset

VARIANTS = ("fp32", "int8", "pruned", "distilled")


@dataclass
class Result:
    detector: str
    chosen: str
    models: dict  # variant -> ONNX bytes
    measured: list  # compress.Measured, one per variant
    manifest: dict  # of the chosen variant (without "files")
    fitted: dict = field(default_factory=dict)  # variant -> detectors.Fitted (for tests and benches)
    holdout_z: np.ndarray | None = None
    faulty_z: np.ndarray | None = None
    skipped: dict = field(default_factory=dict)  # variant -> why it was not built


def scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature; a constant feature gets scale 1.

    >>> m, s = scaler(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> m.tolist(), s.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    """
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(std > 1e-12 * (1.0 + np.abs(mean)), std, 1.0)


def synthetic_faults(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """Held-back healthy rows with 1-3 features pushed 3-6 standard deviations (see module doc)."""
    rng = np.random.default_rng(seed)
    out = z.copy()
    for row in out:
        k = rng.integers(1, 4)
        cols = rng.choice(z.shape[1], size=min(k, z.shape[1]), replace=False)
        row[cols] += rng.choice([-1.0, 1.0], size=len(cols)) * rng.uniform(3.0, 6.0, size=len(cols))
    return out


def _versions() -> dict:
    import onnxruntime
    import sklearn

    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed distribution's version: training never imports the daemon package
        ours = version("pdm-agent")
    except PackageNotFoundError:
        ours = "unknown"
    return {"pdm-agent": ours, "python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "onnxruntime": onnxruntime.__version__}


def train(data: Dataset, detector: str = "bundle:pca", *, faulty: Dataset | None = None, holdout: float = 0.3,
          seed: int = 0, version: str | None = None, variants=VARIANTS, repeat: int = 300,
          force_variant: str | None = None) -> Result:
    """Fit, compress, measure, gate and select (see module docstring). `detector`: a bundle model
    kind (models/bundle.py KINDS) or its short name; the manifest names the bundle by its kind."""
    detector = kind(detector)
    x = np.asarray(data.x, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    n_hold = int(round(len(x) * holdout))
    if len(x) - n_hold < max(30, 2 * x.shape[1]) or n_hold < 10:
        raise DataError(f"{data.source}: {len(x)} complete feature rows are too few to train and hold back "
                        f"{holdout:.0%} (need >= {max(30, 2 * x.shape[1]) + 10}); record longer")
    train_x, hold_x = x[:-n_hold], x[-n_hold:]
    mean, scale = scaler(train_x)
    z, hold_z = (train_x - mean) / scale, (hold_x - mean) / scale
    if faulty is not None:
        if list(faulty.names) != list(data.names):
            raise DataError(f"{faulty.source}: its features differ from the training data's")
        fx = faulty.x[np.isfinite(faulty.x).all(axis=1)]
        faulty_z = (fx - mean) / scale
        faulty_source = faulty.source
    else:
        faulty_z = synthetic_faults(hold_z, seed)
        faulty_source = "synthetic (held-back rows, 1-3 features shifted 3-6 sd)"

    fitted = {"fp32": detectors.fit(detector, z, seed)}
    models = {"fp32": fitted["fp32"].onnx}
    skipped = {}
    if "int8" in variants and detector == "bundle:iforest":
        # Trees compare thresholds; there is no weight matrix for int8 arithmetic to shrink.
        skipped["int8"] = "not applicable: a tree ensemble has no weight matrices"
    elif "int8" in variants:
        models["int8"] = compress.quantize_int8(fitted["fp32"].onnx)
    if "pruned" in variants:
        fitted["pruned"] = detectors.prune(fitted["fp32"], z, seed)
        models["pruned"] = fitted["pruned"].onnx
    if "distilled" in variants:
        fitted["distilled"] = detectors.distill(fitted["fp32"], z, seed)
        models["distilled"] = fitted["distilled"].onnx
    details = {k: dict(f.params) for k, f in fitted.items()}
    details.setdefault("int8", {"from": "fp32", "weights": "int8 (dynamic)"})

    measured = compress.measure(models, data.names, mean, scale, hold_z, faulty_z, details, repeat=repeat)
    # ONNX must reproduce the float64 reference (scikit-learn's own numbers for fp32).
    both = np.concatenate([hold_z, faulty_z])
    from models.onnx_runtime import OnnxDetector

    for m in measured:
        if m.variant in fitted:
            got = OnnxDetector(models[m.variant], data.names, mean, scale).score_batch(both)
            m.detail["onnx_max_abs_err"] = float(np.max(np.abs(got - fitted[m.variant].reference(both))))
    chosen = next(m for m in measured if m.variant == force_variant) if force_variant else compress.select(measured)

    det = OnnxDetector(models[chosen.variant], data.names, mean, scale)
    calibrator = Calibrator.fit(det.score_batch(hold_z))
    now = datetime.now(timezone.utc)
    spec = data.spec
    manifest = {
        "name": detector,
        "version": version or now.strftime("%Y%m%dT%H%M%SZ"),
        "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created_with": _versions(),
        "training": {"source": data.source, "rows": int(len(train_x)), "holdout_rows": int(n_hold),
                     "faulty_rows": int(len(faulty_z)), "faulty_source": faulty_source, "seed": seed},
        "features": {
            "names": list(data.names),
            "window": data.window,
            "spec": None if spec is None else {
                "rate": spec.rate, "channels": list(spec.channels),
                "temperature_channels": list(spec.temperature_channels),
                "bands": [list(b) for b in spec.bands], "velocity_band": list(spec.velocity_band),
                "envelope_band": list(spec.envelope_band),
            },
        },
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
        "calibration": calibrator.to_dict(),
        "model": {"file": "model.onnx", "format": "onnx", "variant": chosen.variant, "input": "x",
                  "output": "score", "params": chosen.detail},
        "report": {
            "rule": "accepted = AUC >= fp32 AUC - 0.02 and rank correlation with fp32 >= 0.9; "
                    "chosen = lowest latency among accepted, smaller file within 10 %",
            "variants": [m.row() for m in measured],
            "skipped": skipped,
        },
    }
    return Result(detector, chosen.variant, models, measured, manifest, fitted, hold_z, faulty_z, skipped)


def write_bundle(result: Result, out: str, variant: str | None = None) -> str:
    """Write `result` (its chosen variant, or `variant`) as an unsigned bundle directory."""
    from models import bundle

    variant = variant or result.chosen
    manifest = dict(result.manifest)
    if variant != result.chosen:
        raise ValueError("the manifest's calibration belongs to the chosen variant; retrain with force_variant")
    return bundle.write(out, manifest, {"model.onnx": result.models[variant]})


def report_table(result: Result) -> str:
    """The per-variant report `model train` prints."""
    lines = [f"{'variant':<10} {'size':>9} {'latency':>10} {'AUC':>6} {'rank r':>7}  verdict"]
    for m in result.measured:
        mark = "*" if m.variant == result.chosen else " "
        lines.append(f"{m.variant:<9}{mark} {m.size_bytes / 1024:>7.1f}kB {m.latency_us:>8.1f}us "
                     f"{m.auc:>6.3f} {m.rank_corr:>7.3f}  {'accepted' if m.accepted else 'REJECTED'}: {m.reason}")
    lines += [f"{v:<10} {'-':>9} {'-':>10} {'-':>6} {'-':>7}  {why}" for v, why in result.skipped.items()]
    return "\n".join(lines)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
