"""Fitting the workstation detectors with scikit-learn, and their compressed variants.

Each detector is fitted on standardised healthy feature rows ``Z`` (the scaler lives in the bundle)
and returned as a `Fitted`: a float64 reference scorer (scikit-learn or numpy on the fitted
arrays: what the ONNX graph must reproduce) and the ONNX graph itself. Raw scores are normalised
so a typical healthy row scores about 1 (float32 inference then keeps ~1e-7 relative precision).

Their names are bundle model kinds, ``bundle:<name>`` (models/bundle.py KINDS); the short name is
accepted wherever a kind is asked for.

- ``pca``: PCA keeping `variance` of the variance; score ``T2 / T2_99 + Q / Q_99`` (Hotelling T2
  inside the model plane, squared prediction error Q off it, each over its 99th percentile on the
  training rows). The MSPC classic.
- ``iforest``: IsolationForest; score ``2 ** (-E[path length] / c(max_samples))`` (sklearn's
  ``-score_samples``), exported as one tree-ensemble node.
- ``autoencoder``: an MLP (F -> h -> b -> h -> F, tanh) trained to reproduce its input; score =
  mean squared reconstruction error over its median on the training rows.

Compression (each checked by the quality gate in models/training/compress.py):

- `prune`: fewer components (PCA: those explaining 80 % instead of 95 %), fewer trees
  (IsolationForest: a quarter; trees are i.i.d., so the first quarter is a random subset), fewer
  units (autoencoder: the half of each hidden layer with the least activation variance times
  outgoing weight, then a short fine-tune).
- `distill`: a small MLP student (one hidden layer of 16 ReLU units) regressing the teacher's log
  score on the training rows plus noisy copies of them (so it also learns the anomalous side).
- int8 quantization is applied to the ONNX graph (compress.quantize_int8).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models.bundle import SHORT_NAMES, kind
from models.training import export

DETECTORS = tuple(SHORT_NAMES)  # "pca", "iforest", "autoencoder": kinds bundle:<name> (models/bundle.py: why)
EULER = 0.5772156649015329


@dataclass
class Fitted:
    detector: str  # a bundle model kind: bundle:pca | bundle:iforest | bundle:autoencoder
    variant: str  # fp32 | pruned | distilled (int8 is derived from an ONNX graph)
    reference: Callable[[np.ndarray], np.ndarray]  # Z (n, F) -> raw scores (n,), float64
    onnx: bytes
    params: dict = field(default_factory=dict)
    estimator: object = None


def fit(detector: str, z: np.ndarray, seed: int = 0) -> Fitted:
    """Fit `detector`, a bundle model kind ("bundle:pca", "bundle:iforest", "bundle:autoencoder",
    or its short name "pca", ...), on standardised healthy rows `z`; ValueError for another name."""
    fitters = {"bundle:pca": fit_pca, "bundle:iforest": fit_iforest, "bundle:autoencoder": fit_autoencoder}
    if kind(detector) not in fitters:
        raise ValueError(f"unknown detector {detector!r}; valid: {', '.join(DETECTORS)}")
    return fitters[kind(detector)](z, seed=seed)


# -- PCA T2/Q --------------------------------------------------------------------------------------
def fit_pca(z: np.ndarray, seed: int = 0, variance: float = 0.95, variant: str = "fp32") -> Fitted:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(z)
    comps, var = pca.components_, pca.explained_variance_
    mean = pca.mean_  # ~0 after standardising; kept exact by shifting the input

    def stats(x):
        t = (x - mean) @ comps.T
        t2 = (t * t / var).sum(axis=1)
        resid = (x - mean) - t @ comps
        return t2, (resid * resid).sum(axis=1)

    t2, q = stats(z)
    t2_lim, q_lim = float(np.quantile(t2, 0.99)), max(float(np.quantile(q, 0.99)), 1e-12)

    def reference(x):
        a, b = stats(x)
        return a / t2_lim + b / q_lim

    return Fitted("bundle:pca", variant, reference, export.pca_t2q(mean, comps, var, t2_lim, q_lim),
                  {"components": int(len(var)), "variance": variance, "t2_limit": t2_lim, "q_limit": q_lim}, pca)


# -- IsolationForest ---------------------------------------------------------------------------------
def average_path_length(n) -> np.ndarray:
    """c(n): mean path length of an unsuccessful search in a binary search tree of n points.

    >>> average_path_length(np.array([1, 2, 256])).round(4).tolist()
    [0.0, 1.0, 10.2448]
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _forest_trees(forest, n_features: int, n_trees: int | None = None) -> list[dict]:
    subsample = forest._max_features != n_features  # sklearn indexes features per tree only then
    trees = []
    for est, feats in list(zip(forest.estimators_, forest.estimators_features_))[:n_trees]:
        t = est.tree_
        feature = np.where(t.children_left >= 0, t.feature, 0)
        if subsample:
            feature = np.asarray(feats)[feature]
        value = t.compute_node_depths() + average_path_length(t.n_node_samples) - 1.0
        # sklearn compares float32 inputs with float64 thresholds that were float32 splits.
        trees.append({"feature": feature, "threshold": t.threshold.astype(np.float32),
                      "left": t.children_left, "right": t.children_right, "value": value})
    return trees


def _forest_reference(trees, denominator: float) -> Callable:
    def reference(x):
        x32 = np.asarray(x, dtype=np.float32)
        depth = np.zeros(len(x32))
        rows = np.arange(len(x32))
        for tree in trees:  # vectorised over rows: every row steps down the tree together
            node = np.zeros(len(x32), dtype=np.intp)
            while True:
                inner = tree["left"][node] >= 0
                if not inner.any():
                    break
                go_left = x32[rows, tree["feature"][node]] <= tree["threshold"][node]
                nxt = np.where(go_left, tree["left"][node], tree["right"][node])
                node = np.where(inner, nxt, node)
            depth += tree["value"][node]
        return np.exp2(-depth / denominator)
    return reference


def fit_iforest(z: np.ndarray, seed: int = 0, n_estimators: int = 100) -> Fitted:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(z)
    return _forest_variant(forest, z.shape[1], None, "fp32")


def _forest_variant(forest, n_features: int, n_trees: int | None, variant: str) -> Fitted:
    trees = _forest_trees(forest, n_features, n_trees)
    denominator = len(trees) * float(average_path_length(np.array([forest._max_samples]))[0])
    if variant == "fp32":
        reference = lambda x: -forest.score_samples(x)  # noqa: E731 (scikit-learn's own numbers)
    else:
        reference = _forest_reference(trees, denominator)
    return Fitted("bundle:iforest", variant, reference, export.tree_ensemble(trees, n_features, -1.0 / denominator),
                  {"trees": len(trees), "max_samples": int(forest._max_samples)}, forest)


# -- MLP autoencoder ---------------------------------------------------------------------------------
def _mlp_forward(weights, biases, activation, x):
    act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0), "identity": lambda v: v}[activation]
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = x @ w + b
        if i < len(weights) - 1:
            x = act(x)
    return x


def _ae_fitted(mlp, z, variant: str) -> Fitted:
    w, b, act = mlp.coefs_, mlp.intercepts_, mlp.activation
    err = lambda x: ((x - mlp.predict(x)) ** 2).mean(axis=1)  # noqa: E731
    scale = max(float(np.median(err(z))), 1e-12)
    return Fitted("bundle:autoencoder", variant, lambda x: err(x) / scale, export.autoencoder(w, b, act, scale),
                  {"layers": [w[0].shape[0], *[m.shape[1] for m in w]], "activation": act}, mlp)


def fit_autoencoder(z: np.ndarray, seed: int = 0, hidden: tuple = (16, 4, 16), max_iter: int = 400) -> Fitted:
    from sklearn.neural_network import MLPRegressor

    mlp = MLPRegressor(hidden_layer_sizes=hidden, activation="tanh", alpha=1e-4, max_iter=max_iter,
                       learning_rate_init=3e-3, random_state=seed, tol=1e-5, n_iter_no_change=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the gate judges the result
        mlp.fit(z, z)
    return _ae_fitted(mlp, z, "fp32")


# -- compression: pruning and distillation --------------------------------------------------------------
def prune(teacher: Fitted, z: np.ndarray, seed: int = 0) -> Fitted:
    """A smaller model of the same kind (see module docstring)."""
    if teacher.detector == "bundle:pca":
        return fit_pca(z, seed, variance=0.80, variant="pruned")
    if teacher.detector == "bundle:iforest":
        forest = teacher.estimator
        return _forest_variant(forest, z.shape[1], max(1, len(forest.estimators_) // 4), "pruned")
    mlp = copy.deepcopy(teacher.estimator)
    w, b = [m.copy() for m in mlp.coefs_], [m.copy() for m in mlp.intercepts_]
    act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0)}[mlp.activation]
    h = z
    for i in range(len(w) - 1):  # every hidden layer keeps its most useful half
        h = act(h @ w[i] + b[i])
        importance = h.std(axis=0) * np.linalg.norm(w[i + 1], axis=1)
        keep = np.sort(np.argsort(importance)[::-1][: max(1, (len(importance) + 1) // 2)])
        w[i], b[i], w[i + 1] = w[i][:, keep], b[i][keep], w[i + 1][keep, :]
        h = h[:, keep]
    mlp.coefs_, mlp.intercepts_ = w, b
    mlp.hidden_layer_sizes = tuple(m.shape[1] for m in w[:-1])
    mlp.warm_start, mlp.max_iter = True, 60  # a short fine-tune from the pruned weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(z, z)
    return _ae_fitted(mlp, z, "pruned")


def distill(teacher: Fitted, z: np.ndarray, seed: int = 0, hidden: int = 16) -> Fitted:
    """A one-hidden-layer MLP student trained on the teacher's log scores."""
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(seed)
    # Noisy copies at growing distances teach the student the anomalous side too: dense noise,
    # and sparse shifts of a couple of features (how faults move condition features).
    parts = [z] + [z + rng.normal(0.0, s, z.shape) for s in (0.5, 1.0, 2.0, 4.0)]
    for s in (1.0, 2.0, 4.0, 8.0):
        parts.append(z + (rng.random(z.shape) < 2.0 / z.shape[1]) * rng.normal(0.0, s, z.shape))
    x = np.concatenate(parts)
    y = np.log(np.maximum(teacher.reference(x), 1e-9))
    student = MLPRegressor(hidden_layer_sizes=(hidden,), activation="relu", max_iter=500,
                           learning_rate_init=3e-3, random_state=seed, tol=1e-6, n_iter_no_change=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student.fit(x, y)
    w, b = student.coefs_, student.intercepts_

    def reference(v):  # the log score: monotone like the teacher's, and exp() would overflow far out
        return _mlp_forward(w, b, "relu", v).ravel()

    return Fitted(teacher.detector, "distilled", reference, export.regressor(w, b, "relu", exp_output=False),
                  {"student": [w[0].shape[0], hidden, 1], "teacher": teacher.variant}, student)
