"""ONNX graphs for the trained detectors, built from the fitted arrays.

Every graph has one input ``x`` (float32, shape (N, F), features already standardised with the
bundle's scaler) and one output ``score`` (float32, shape (N, 1)): the raw anomaly score, higher
is more anomalous. The scaler and the score calibration live in the bundle manifest, so the graph
is only the model and the adapter (models/onnx_runtime.py) is the same for every detector.

Why hand-built graphs instead of skl2onnx for everything: skl2onnx converts a PCA or an MLP into
the reconstruction only (the T2/Q or error arithmetic would have to be spliced on), and its
IsolationForest graph has a node per tree per step (about 2 ms a row). Here an IsolationForest is
one ``TreeEnsembleRegressor`` node whose leaves hold the path length, so a row costs tens of
microseconds; `skl2onnx_isolation_forest` is kept to measure that claim (bench/models.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ML_OPSET = 3  # TreeEnsembleRegressor as skl2onnx emits it; onnxruntime supports it everywhere


def _model(nodes, inits, n_features: int, doc: str, ml: bool = False) -> bytes:
    graph = helper.make_graph(
        nodes, "pdm_detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), name=k) for k, v in inits.items()],
        doc_string=doc,
    )
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("ai.onnx.ml", ML_OPSET)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pdm-agent")
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    onnx.checker.check_model(model)
    return model.SerializeToString()


def pca_t2q(mean, components, variances, t2_limit: float, q_limit: float) -> bytes:
    """PCA monitoring statistic ``T2 / t2_limit + Q / q_limit`` (Hotelling T2 and SPE).

    mean : (F,) PCA centre; components : (k, F) principal axes (sklearn ``components_``);
    variances : (k,) eigenvalues.
    """
    p = np.asarray(components, dtype=np.float64).T  # (F, k)
    f, k = p.shape
    inits = {
        "mu": np.asarray(mean, dtype=np.float64).reshape(1, f), "P": p, "Pt": p.T,
        "inv_var": (1.0 / np.asarray(variances, dtype=np.float64) / t2_limit).reshape(k, 1),
        "ones_q": np.full((f, 1), 1.0 / q_limit),
    }
    nodes = [
        helper.make_node("Sub", ["x", "mu"], ["xc"]),
        helper.make_node("MatMul", ["xc", "P"], ["t"]),
        helper.make_node("Mul", ["t", "t"], ["t_sq"]),
        helper.make_node("MatMul", ["t_sq", "inv_var"], ["t2"]),
        helper.make_node("MatMul", ["t", "Pt"], ["recon"]),
        helper.make_node("Sub", ["xc", "recon"], ["resid"]),
        helper.make_node("Mul", ["resid", "resid"], ["resid_sq"]),
        helper.make_node("MatMul", ["resid_sq", "ones_q"], ["q"]),
        helper.make_node("Add", ["t2", "q"], ["score"]),
    ]
    return _model(nodes, inits, f, "PCA T2/Q")


def _dense(nodes, inits, x: str, weights, biases, activation: str, prefix: str) -> str:
    """Affine layers; `activation` after every layer but the last. Returns the output name."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits[f"{prefix}W{i}"], inits[f"{prefix}b{i}"] = w, b
        nodes.append(helper.make_node("MatMul", [x, f"{prefix}W{i}"], [f"{prefix}m{i}"]))
        nodes.append(helper.make_node("Add", [f"{prefix}m{i}", f"{prefix}b{i}"], [f"{prefix}a{i}"]))
        x = f"{prefix}a{i}"
        if i < len(weights) - 1 and activation != "identity":
            op = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid"}[activation]
            nodes.append(helper.make_node(op, [x], [f"{prefix}h{i}"]))
            x = f"{prefix}h{i}"
    return x


def autoencoder(weights, biases, activation: str, error_scale: float) -> bytes:
    """Mean squared reconstruction error of an MLP autoencoder, divided by `error_scale`."""
    f = weights[0].shape[0]
    nodes, inits = [], {}
    out = _dense(nodes, inits, "x", weights, biases, activation, "")
    inits["ones_e"] = np.full((f, 1), 1.0 / (f * error_scale))
    nodes += [
        helper.make_node("Sub", ["x", out], ["resid"]),
        helper.make_node("Mul", ["resid", "resid"], ["resid_sq"]),
        helper.make_node("MatMul", ["resid_sq", "ones_e"], ["score"]),
    ]
    return _model(nodes, inits, f, "MLP autoencoder reconstruction error")


def regressor(weights, biases, activation: str, exp_output: bool) -> bytes:
    """A small MLP regressor (the distilled student); `exp_output` undoes a log-score target."""
    f = weights[0].shape[0]
    nodes, inits = [], {}
    out = _dense(nodes, inits, "x", weights, biases, activation, "")
    nodes.append(helper.make_node("Exp" if exp_output else "Identity", [out], ["score"]))
    return _model(nodes, inits, f, "distilled student")


def tree_ensemble(trees, n_features: int, scale: float) -> bytes:
    """Sum of per-tree leaf values times `scale`, then ``2 ** score``, as one TreeEnsembleRegressor.

    trees : list of dicts with ``feature, threshold, left, right, value`` node arrays (sklearn
    layout: a leaf has left == -1; go left when x <= threshold). For an IsolationForest the leaf
    value is the path length and ``scale = -1 / (n_trees * c(max_samples))``, so the output is
    sklearn's ``-score_samples``.
    """
    a = {k: [] for k in ("tree", "node", "feat", "mode", "thr", "true", "false")}
    leaves = {"tree": [], "node": [], "value": []}
    for t, tree in enumerate(trees):
        left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
        leaf = left == -1
        n = len(left)
        a["tree"] += [t] * n
        a["node"] += list(range(n))
        a["feat"] += [int(v) if not lf else 0 for v, lf in zip(tree["feature"], leaf)]
        a["mode"] += ["LEAF" if lf else "BRANCH_LEQ" for lf in leaf]
        a["thr"] += [float(v) if not lf else 0.0 for v, lf in zip(tree["threshold"], leaf)]
        a["true"] += [int(v) if v >= 0 else 0 for v in left]
        a["false"] += [int(v) if v >= 0 else 0 for v in right]
        idx = np.flatnonzero(leaf)
        leaves["tree"] += [t] * len(idx)
        leaves["node"] += idx.tolist()
        leaves["value"] += np.asarray(tree["value"], dtype=np.float64)[idx].tolist()
    ensemble = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["depth"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function="SUM", post_transform="NONE",
        nodes_treeids=a["tree"], nodes_nodeids=a["node"], nodes_featureids=a["feat"],
        nodes_modes=a["mode"], nodes_values=a["thr"],
        nodes_truenodeids=a["true"], nodes_falsenodeids=a["false"],
        nodes_missing_value_tracks_true=[0] * len(a["tree"]),
        target_treeids=leaves["tree"], target_nodeids=leaves["node"],
        target_ids=[0] * len(leaves["tree"]), target_weights=leaves["value"],
    )
    inits = {"ln2_scale": np.array([np.log(2.0) * scale])}
    nodes = [
        ensemble,
        helper.make_node("Mul", ["depth", "ln2_scale"], ["log_score"]),
        helper.make_node("Exp", ["log_score"], ["score"]),
    ]
    return _model(nodes, inits, n_features, "IsolationForest as one tree ensemble", ml=True)


def skl2onnx_isolation_forest(forest, n_features: int) -> bytes:
    """skl2onnx's own conversion (a node per tree per step): kept only to measure against."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        forest, initial_types=[("x", FloatTensorType([None, n_features]))],
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return onx.SerializeToString()
