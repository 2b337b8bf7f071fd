"""Variants of a trained model, measured the way the gateway will run them, and the quality gate.

Every variant (fp32, int8, pruned, distilled) is scored through onnxruntime with the same adapter
the agent uses (models/onnx_runtime.py), so the reported quality, latency and size are those of
the file that would ship.

Quality gate (a compression step is accepted only when it keeps detection quality):
    AUC on held-back data >= AUC(fp32) - `max_auc_drop` (default 0.02), and
    Spearman rank correlation with the fp32 scores on the same rows >= `min_rank_corr` (0.9).
The second test catches a variant that still separates this test set but no longer ranks like
the model that was validated (a quantised small autoencoder can keep 0.1 correlation).

Selection rule: among accepted variants, the one with the lowest single-window latency; when two
are within 10 % of each other, the smaller file. fp32 is the reference and always accepted.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from models.onnx_runtime import OnnxDetector

MAX_AUC_DROP = 0.02
MIN_RANK_CORR = 0.9


@dataclass
class Measured:
    variant: str
    size_bytes: int
    latency_us: float  # median single-window score() through the agent's adapter
    auc: float
    rank_corr: float  # Spearman with fp32
    accepted: bool
    reason: str
    detail: dict

    def row(self) -> dict:
        return asdict(self)


def _ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    sv = v[order]
    # indices where a run of equal values starts and ends
    edges = np.flatnonzero(np.diff(sv) != 0) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(v)]])
    mean_rank = (starts + ends - 1) / 2.0
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auc(healthy: np.ndarray, faulty: np.ndarray) -> float:
    """Probability that a faulty row scores above a healthy one (ties count half).

    >>> auc(np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.9]))
    0.8333333333333334
    """
    h, f = np.asarray(healthy, float), np.asarray(faulty, float)
    r = _ranks(np.concatenate([h, f]))
    return float((r[len(h):].sum() - len(f) * (len(f) - 1) / 2.0) / (len(h) * len(f)))


def rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (0 when either side is constant).

    >>> round(rank_corr(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 25])), 6)
    0.8
    """
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def quantize_int8(model: bytes) -> bytes:
    """Dynamic int8 quantisation of the weight matrices (onnxruntime.quantization)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its "consider pre-processing" advice is noise here
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(model)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        with open(dst, "rb") as f:
            return f.read()


def latency_us(detector: OnnxDetector, row: dict, repeat: int = 300) -> float:
    """Median wall time of one `score(row)` (what the agent pays per window), microseconds."""
    for _ in range(20):
        detector.score(row)
    times = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter_ns()
        detector.score(row)
        times[i] = time.perf_counter_ns() - t0
    return float(np.median(times) / 1e3)


def gate(auc_value: float, corr: float, reference_auc: float, max_auc_drop: float = MAX_AUC_DROP,
         min_rank_corr: float = MIN_RANK_CORR) -> tuple[bool, str]:
    """(accepted, reason) for a compressed variant against the fp32 reference.

    >>> gate(0.97, 0.95, 0.98)
    (True, 'quality kept')
    >>> gate(0.90, 0.95, 0.98)[1]
    'AUC 0.900 < fp32 AUC 0.980 - 0.02'
    >>> gate(0.98, 0.10, 0.98)[1]
    'rank correlation with fp32 0.10 < 0.9'
    """
    if not np.isfinite(auc_value) or not np.isfinite(corr):
        return False, "non-finite scores"
    if auc_value < reference_auc - max_auc_drop:
        return False, f"AUC {auc_value:.3f} < fp32 AUC {reference_auc:.3f} - {max_auc_drop:g}"
    if corr < min_rank_corr:
        return False, f"rank correlation with fp32 {corr:.2f} < {min_rank_corr:g}"
    return True, "quality kept"


def measure(variants: dict[str, bytes], names, mean, scale, healthy_z: np.ndarray, faulty_z: np.ndarray,
            details: dict | None = None, repeat: int = 300, **gate_args) -> list[Measured]:
    """Score every variant on held-back healthy and faulty rows; gate all against ``fp32``."""
    if "fp32" not in variants:
        raise ValueError("the fp32 variant is the reference and must be present")
    details = details or {}
    scores, out = {}, []
    row = dict(zip(names, (healthy_z[0] * np.asarray(scale) + np.asarray(mean)).tolist()))
    both = np.concatenate([healthy_z, faulty_z])
    for name, model in variants.items():
        det = OnnxDetector(model, names, mean, scale, name=name)
        scores[name] = det.score_batch(both)
        lat = latency_us(det, row, repeat)
        s = scores[name]
        a = auc(s[: len(healthy_z)], s[len(healthy_z):]) if np.isfinite(s).all() else float("nan")
        c = 1.0 if name == "fp32" else (rank_corr(s, scores["fp32"]) if np.isfinite(s).all() else float("nan"))
        out.append(Measured(name, len(model), round(lat, 1), round(a, 4), round(c, 4), True, "reference",
                            details.get(name, {})))
    ref_auc = out[0].auc if out[0].variant == "fp32" else next(m.auc for m in out if m.variant == "fp32")
    for m in out:
        if m.variant != "fp32":
            m.accepted, m.reason = gate(m.auc, m.rank_corr, ref_auc, **gate_args)
    return out


def select(measured: list[Measured]) -> Measured:
    """The accepted variant with the lowest latency; within 10 % of it, the smallest file."""
    accepted = [m for m in measured if m.accepted]
    fastest = min(m.latency_us for m in accepted)
    near = [m for m in accepted if m.latency_us <= 1.1 * fastest]
    return min(near, key=lambda m: (m.size_bytes, m.latency_us))
