"""The `fleet:` section: federated baselines (docs/federated.md; config.yaml documents every key).

Kept apart from agent/config_models.py (one section, one concern), which imports it; the rules
that look across sections (`check`) are called by `Config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from agent.privacy import PrivacyConfig
from drivers.config import NAME_PATTERN, Section, rule


# Here, not in agent/fleet_privacy.py (which uses it): the config importing that module made an import cycle.
class SharePrivacy(PrivacyConfig):
    """`fleet.privacy` (agent/fleet_privacy.py): epsilon and delta per share, bounds per feature,
    which covariance is shared."""

    epsilon: float = Field(gt=0, le=100, description="privacy loss of one share for one window")
    mechanism: Literal["gaussian"] = Field("gaussian", description="the Gaussian mechanism (L2 sensitivity)")
    delta: float = Field(1e-6, gt=0, le=1e-3, description="failure probability of the Gaussian mechanism")
    covariance: Literal["full", "diagonal"] = Field(
        "full", description="full: all d(d+1)/2 covariances (how alike machines differ together); diagonal: "
                            "variances only (less noise per number, no correlations; docs/federated.md)")


class FleetConfig(Section):
    """`fleet:` (docs/federated.md)."""

    share_baseline: bool = Field(False, description="publish each learned baseline's statistics (never samples) "
                                                    "to the fleet topic, retained")
    machine_type: Optional[str] = Field(None, pattern=NAME_PATTERN, max_length=64,
                                        description="the group of alike machines; part of the fleet topic")
    sensors: Optional[list[str]] = Field(None, description="sensors that share / start from the prior (null: all)")
    prior: Optional[Path] = Field(None, description="signed fleet prior bundle (`pdm-agent fleet merge`) to start from")
    prior_windows: Optional[int] = Field(None, ge=1, description="the prior counts as this many windows "
                                                                 "(null: the windows it was pooled from)")

    privacy: Optional[SharePrivacy] = Field(None, description="differential-privacy noise on shares "
                                                              "(agent/fleet_privacy.py); null = exact statistics")

    def covers(self, sensor: str) -> bool:
        """Whether `sensor` shares / starts from the prior (`sensors`: null means all)."""
        return self.sensors is None or sensor in self.sensors

    @model_validator(mode="after")
    def _named_group(self) -> "FleetConfig":
        if (self.share_baseline or self.prior is not None) and self.machine_type is None:
            raise rule(("machine_type",), "required with share_baseline or prior: it names the group of alike "
                                           "machines whose baselines are pooled (e.g. pump-a)")
        if self.privacy is not None and not self.share_baseline:
            raise rule(("privacy",), "noise is added to what this agent shares: set share_baseline: true, or "
                                     "remove privacy")
        return self


def check(cfg) -> None:
    """Rules across sections; raises `rule(at, message)` at the exact key."""
    fleet = cfg.fleet
    names = [s.name for s in cfg.sensors]
    for i, name in enumerate(fleet.sensors or []):
        if name not in names:
            raise rule(("fleet", "sensors", i), f"'{name}' is not a sensor of this file (sensors: {', '.join(names)})")
    if fleet.prior is not None and not cfg.models.trusted_keys:
        raise rule(("fleet", "prior"), "a fleet prior is verified before loading: list the public key that "
                                       "signed it in models.trusted_keys")
    if not (fleet.share_baseline or fleet.prior is not None):
        return
    if fleet.privacy is not None:
        _check_bounds(cfg)
    why = "fleet.share_baseline" if fleet.share_baseline else "fleet.prior"
    for i, s in enumerate(cfg.sensors):
        if fleet.sensors is not None and s.name not in fleet.sensors:
            continue
        det = s.detector
        if det.type not in ("auto", "gaussian"):
            raise rule(("sensors", i, "detector", "type"),
                       f"{why}: detector '{det.type}' cannot be pooled exactly (only gaussian keeps "
                       "counts, means and a covariance); use gaussian, or leave this sensor out of fleet.sensors")
        if dict(det.params).get("half_life") is not None:
            raise rule(("sensors", i, "detector", "params", "half_life"),
                       f"{why}: an exponentially weighted baseline has no exact counts to pool; "
                       "remove half_life (slow adaptation is adapt_half_life_s, which sharing allows)")


def _check_bounds(cfg) -> None:
    """Every feature a sharing sensor learns needs bounds under fleet.privacy (a log feature: low > 0)."""
    from agent.fleet_privacy import sensor_features
    from models.gaussian import is_log_feature

    p = cfg.fleet.privacy
    for s in cfg.sensors:
        if cfg.fleet.sensors is not None and s.name not in cfg.fleet.sensors:
            continue
        try:
            names = sensor_features(s)
        except Exception:  # features known only at run time: the share is refused then, with the names
            continue
        missing = [n for n in names if p.bounds_of(n) is None]
        if missing:
            raise rule(("fleet", "privacy", "bounds"),
                       f"{len(missing)} of sensor {s.name}'s features have no bounds: {', '.join(missing[:6])}"
                       f"{' ...' if len(missing) > 6 else ''}; a private share clips every feature it learns "
                       "(patterns such as '*.rms_g' cover many)")
        bad = [n for n in names if is_log_feature(n) and p.bounds_of(n)[0] <= 0]
        if bad:
            raise rule(("fleet", "privacy", "bounds"),
                       f"{', '.join(bad[:6])}: modelled on a log scale, so the low bound must be above 0 "
                       f"(got {p.bounds_of(bad[0])[0]:g})")
