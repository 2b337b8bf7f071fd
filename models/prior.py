"""A fleet prior: the pooled baseline of machines of one type, and a new machine's start from it.

The prior document (the model file `prior.json` of a signed bundle, written by `pdm-agent fleet
merge`, docs/federated.md)::

    {"kind": "fleet-prior", "format": 1, "machine_type": "pump-a", "created": ISO 8601,
     "detector": gaussian state() with the pooled n, mean, covariance (models/pooling.py),
     "calibration": Calibrator.to_dict() with method "fleet", "machines": [{"device", "sensor", "n"}],
     "privacy": null | {"mechanism", "epsilon", "delta", ...}}

`prior_model` turns it into a streaming model that is `ready` at once: it scores from the first
window with the prior's calibration and keeps learning this machine through the ordinary slow
adaptation (windows scoring below the warning level). The detector starts with the prior counted
as `prior_windows` windows (default: the pooled count), so after k healthy windows of its own
the prior weighs n0 / (n0 + k) of the mean and covariance; once that 1/n step is smaller than the
adaptation half-life's, the prior fades by 2 ** (-1 / half-life) per window (models/gaussian.py
`ew_weight`).
"""

from __future__ import annotations

from dataclasses import replace

from models import registry
from models.calibration import Calibrator
from models.pooling import PoolingError, detector_state, stats_of
from models.streaming import StreamingModel

KIND, FORMAT = "fleet-prior", 1


def check(doc: dict, where: str = "prior") -> None:
    """PoolingError unless `doc` is a fleet prior this version reads."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("format") != FORMAT:
        raise PoolingError(f"{where}: not a fleet prior (kind {KIND!r}, format {FORMAT})")
    stats_of(doc.get("detector"), where)
    try:
        Calibrator.from_dict(doc["calibration"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PoolingError(f"{where}: calibration unusable ({exc})") from None


def prior_model(doc: dict, *, learn_seconds: float, adapt_half_life_s: float | None, cadence_s: float,
                prior_windows: int | None = None, where: str = "prior", **model_args) -> StreamingModel:
    """A streaming model that scores from the first window with the prior (module docstring).

    cadence_s: seconds between this sensor's windows (converts adapt_half_life_s to windows);
    model_args: StreamingModel's drift levels. PoolingError for an unreadable prior."""
    check(doc, where)
    stats = stats_of(doc["detector"], where)
    n0 = int(prior_windows) if prior_windows else stats.n
    half_life = adapt_half_life_s / cadence_s if adapt_half_life_s else None
    blank = registry.create("gaussian", shrinkage=stats.shrinkage)
    model = StreamingModel(blank, learn_seconds=learn_seconds, adapt_half_life_s=adapt_half_life_s, **model_args)
    state = model.state()
    machines = doc.get("machines") or []
    state.update(
        ready=True, baseline_state="ready", recent=None, snapshots=[],
        detector=detector_state(replace(stats, n=n0), half_life),
        calibrator=dict(doc["calibration"]),
        reason=(f"started from the fleet prior for {doc.get('machine_type')!r} ({stats.n} windows from "
                f"{len(machines)} machine(s), created {doc.get('created')}), counted as {n0} windows; "
                + ("adapting to this machine" if adapt_half_life_s else
                   "adaptation is off (adapt_half_life_s: null): the prior stays as it is")),
    )
    return StreamingModel.from_state(state)
