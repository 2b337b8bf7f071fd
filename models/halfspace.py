"""river's Half-Space Trees on min-max scaled log features.

Half-Space Trees (Tan, Ting & Liu 2011) split the unit cube at random and count how much of
the recent healthy mass falls in each cell; a vector landing in sparsely visited cells is
anomalous. river's trees expect inputs in [0, 1], so the first `warmup` learned vectors are
buffered to fix a per-feature min/max (widened by `margin`), and every vector is then scaled
with it and clipped. The trees keep two windows of `window_size` vectors (a reference and the
latest), so the model adapts by itself as it keeps learning.

river is imported only when the trees are built: importing it costs ~110 MiB of RSS, which a
gateway running another detector should not pay. The learned trees are stored as a base64
pickle inside the JSON state; the state is written and read only by the agent itself.
"""

from __future__ import annotations

import base64
import pickle

import numpy as np

from models.base import DetectorBase
from models.gaussian import is_log_feature, to_array


class HalfSpaceTreesDetector(DetectorBase):
    """Half-Space Trees anomaly score (river), in [0, 1], higher = more anomalous.

    Parameters
    ----------
    n_trees, height, window_size, seed
        Passed to `river.anomaly.HalfSpaceTrees`. Height 15 costs ~20 s and ~390 MiB; keep it small.
    warmup
        Learned vectors buffered to fix the min/max scaling before the trees are built.
    margin
        Fraction of the warm-up range added on both sides, so healthy vectors seen later still
        fall inside the cube.
    """

    name = "hst"
    version = "1"
    calibration = None  # fitted on the baseline by models/streaming.py
    novelty = False

    def __init__(
        self,
        n_trees: int = 25,
        height: int = 8,
        window_size: int = 100,
        warmup: int = 100,
        margin: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.warmup = warmup
        self.margin = margin
        self.seed = seed
        self._keys: list[str] = []
        self._log_mask = np.zeros(0, dtype=bool)
        self._buffer: list[list[float]] = []
        self._lo = np.zeros(0)
        self._width = np.ones(0)
        self._trees = None  # river.anomaly.HalfSpaceTrees once warm-up is over

    def _params(self) -> dict:
        return {
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "warmup": self.warmup,
            "margin": self.margin,
            "seed": self.seed,
        }

    def _scaled(self, v: np.ndarray) -> dict[str, float]:
        u = np.clip((v - self._lo) / self._width, 0.0, 1.0)
        return dict(zip(self._keys, u.tolist()))

    def _build(self) -> None:
        from river.anomaly import HalfSpaceTrees  # lazy: ~110 MiB of RSS

        data = np.array(self._buffer)
        lo, hi = data.min(axis=0), data.max(axis=0)
        pad = self.margin * (hi - lo) + 1e-6 * (1.0 + np.abs(lo))
        self._lo, self._width = lo - pad, (hi - lo) + 2 * pad
        self._trees = HalfSpaceTrees(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
        )
        for v in data:
            self._trees.learn_one(self._scaled(v))
        self._buffer = []

    def _fill(self) -> np.ndarray:
        # Missing features sit mid-range: they neither help nor hurt the score.
        if self._trees is None:
            return np.zeros(len(self._keys))
        return self._lo + self._width / 2

    def learn(self, x: dict[str, float]) -> None:
        if not self._keys:
            self._keys = list(x)
            self._log_mask = np.array([is_log_feature(k) for k in self._keys], dtype=bool)
        v = to_array(x, self._keys, self._log_mask, self._fill())
        if self._trees is None:
            self._buffer.append(v.tolist())
            if len(self._buffer) >= self.warmup:
                self._build()
        else:
            self._trees.learn_one(self._scaled(v))

    def score(self, x: dict[str, float]) -> float:
        if self._trees is None:
            return 0.0
        v = to_array(x, self._keys, self._log_mask, self._fill())
        return float(max(0.0, self._trees.score_one(self._scaled(v))))

    def explain(self, x: dict[str, float]) -> dict[str, float]:
        """Distance from the middle of the baseline range, in baseline ranges (0.5 = at its edge)."""
        if self._trees is None:
            return {k: 0.0 for k in x}
        v = to_array(x, self._keys, self._log_mask, self._fill())
        d = np.abs(v - (self._lo + self._width / 2)) / self._width
        contrib = dict(zip(self._keys, d.tolist()))
        return {k: contrib.get(k, 0.0) for k in x}

    def state(self) -> dict:
        trees = None if self._trees is None else base64.b64encode(pickle.dumps(self._trees)).decode()
        return {
            "name": self.name,
            "version": self.version,
            "params": self._params(),
            "keys": self._keys,
            "buffer": self._buffer,
            "lo": self._lo.tolist(),
            "width": self._width.tolist(),
            "trees": trees,
        }

    @classmethod
    def from_state(cls, state: dict) -> "HalfSpaceTreesDetector":
        det = cls(**state["params"])
        det._keys = list(state["keys"])
        det._log_mask = np.array([is_log_feature(k) for k in det._keys], dtype=bool)
        det._buffer = [list(map(float, v)) for v in state["buffer"]]
        det._lo = np.array(state["lo"], dtype=float)
        det._width = np.array(state["width"], dtype=float)
        if state["trees"] is not None:
            det._trees = pickle.loads(base64.b64decode(state["trees"]))  # our own file, see module doc
        return det
