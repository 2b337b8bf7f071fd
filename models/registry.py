"""Every detector by name, so config, bundles and the contract test share one list.

`"auto"` names the default, chosen by measurement (bench/detectors.py, docs/detectors.md).
Importing this module does not import river: the river-based detector imports it lazily.

>>> sorted(DETECTORS)
['gaussian', 'hst', 'pca', 'rarity', 'trend', 'zmax']
>>> create("auto").name
'gaussian'
>>> create("gausian")
Traceback (most recent call last):
...
ValueError: unknown detector 'gausian'; valid: auto, gaussian, hst, pca, rarity, trend, zmax
>>> create("gaussian", height=3)
Traceback (most recent call last):
...
ValueError: detector 'gaussian' has no parameter 'height'; valid: half_life, shrinkage
"""

from __future__ import annotations

import inspect

from models.base import Detector
from models.gaussian import GaussianDetector
from models.halfspace import HalfSpaceTreesDetector
from models.pca import PcaDetector
from models.rarity import RarityDetector
from models.trend import TrendDetector
from models.zmax import ZMaxDetector

DETECTORS: dict[str, type] = {
    GaussianDetector.name: GaussianDetector,
    HalfSpaceTreesDetector.name: HalfSpaceTreesDetector,
    ZMaxDetector.name: ZMaxDetector,
    PcaDetector.name: PcaDetector,  # low-rate multivariate rows (SKAB), docs/BENCHMARKS.md
    TrendDetector.name: TrendDetector,  # univariate online streams: steps and drifts
    RarityDetector.name: RarityDetector,  # one-channel streams (NAB, temperatures): docs/detectors.md
}

# Best AUC on incipient simulated faults, as few false warnings as any, ~40 us/vector, no river
# import: measured by bench/detectors.py, see docs/detectors.md.
DEFAULT = GaussianDetector.name


def resolve(name: str) -> str:
    """The registered name for `name` ("auto" -> the default)."""
    name = DEFAULT if name == "auto" else name
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; valid: {', '.join(['auto', *sorted(DETECTORS)])}")
    return name


def parameters(name: str) -> list[str]:
    """The constructor parameters a detector accepts from the config (those the agent sets itself,
    the class's `agent_params`, are left out)."""
    cls = DETECTORS[resolve(name)]
    internal = getattr(cls, "agent_params", ())
    return [p for p in inspect.signature(cls).parameters if p != "self" and p not in internal]


def create(name: str, agent_params: dict | None = None, **params) -> Detector:
    """A new, untrained detector; unknown names or parameters raise ValueError naming the valid ones.
    `agent_params`: those the agent sets itself (the class's `agent_params`, never from the config)."""
    name = resolve(name)
    valid = parameters(name)
    for key in params:
        if key not in valid:
            raise ValueError(f"detector {name!r} has no parameter {key!r}; valid: {', '.join(valid)}")
    for key in agent_params or {}:
        if key not in getattr(DETECTORS[name], "agent_params", ()):
            raise ValueError(f"detector {name!r} takes no {key!r} from the agent")
    return DETECTORS[name](**params, **(agent_params or {}))


def from_state(state: dict) -> Detector:
    """Restore a detector saved with `state()`, whichever kind it is."""
    return DETECTORS[resolve(state["name"])].from_state(state)
