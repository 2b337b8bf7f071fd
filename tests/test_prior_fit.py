"""A fleet prior that does not fit the new machine is said in words (status `fleet.prior_fit`, one
log line), not left as bare warnings; one that fits says nothing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from agent.config import parse_config
from agent.fleet_cli import write_prior
from agent.fleet_share import FIT_WINDOWS, FleetShare, merge, share_payload
from agent.hotswap import sensor_features
from models import bundle, registry
from models.streaming import StreamingModel


class Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **kw):
        self.lines.append(("info", event, kw))

    def warning(self, event, **kw):
        self.lines.append(("warning", event, kw))

    error = warning


def rows(names, seed, n, level=0.0):
    rng = np.random.default_rng(seed)
    return [dict(zip(names, np.exp(level + rng.normal(0.0, 0.05, len(names))).tolist())) for _ in range(n)]


def prior_cfg(tmp_path):
    key, pub = bundle.keygen(str(tmp_path / "fleet"))
    text = "device: {id: gw-new}\nsensors: [{name: pump1, protocol: sim, detector: {learn_seconds: 600}}]\n"
    names = sensor_features(parse_config(text, "c.yaml").sensors[0])
    shares = []
    for i in range(2):
        m = StreamingModel(registry.create("gaussian"), learn_seconds=100.0, adapt_half_life_s=86400.0)
        for t, x in enumerate(rows(names, 40 + i, 130)):
            m.update(x, ts=1.8e9 + t)
        shares.append((f"s{i}", share_payload(m.state(), device=f"gw-{i}", sensor="pump1", machine_type="pump-a",
                                              window_s=1.0, agent_version="t", learned_at=None)))
    path = write_prior(merge(shares, "pump-a"), str(tmp_path / "prior"))
    bundle.sign(path, key)
    cfg = parse_config(text + f"models: {{trusted_keys: [{pub}]}}\nfleet: {{prior: {path}, machine_type: pump-a}}\n",
                       "c.yaml")
    return cfg, names


def run_new_machine(cfg, names, level):
    log = Log()
    fleet = FleetShare(log, "t")
    model = fleet.prior_model(cfg, cfg.sensors[0])
    assert model is not None and model.ready
    pipeline = SimpleNamespace(model=model, baseline=model.baseline, stats=SimpleNamespace(windows=0))
    seen = []
    for t, x in enumerate(rows(names, 7, FIT_WINDOWS + 5, level)):
        model.update(x, ts=1.9e9 + t)
        pipeline.stats.windows += 1
        seen.append(fleet.status("pump1", pipeline)["fleet"].get("prior_fit"))
    return seen, log


def test_a_machine_unlike_the_donors_is_told_the_prior_does_not_fit(tmp_path):
    cfg, names = prior_cfg(tmp_path)
    seen, log = run_new_machine(cfg, names, level=1.0)  # every feature e times the donors'
    assert all(s is None for s in seen[:FIT_WINDOWS - 1])  # not judged on fewer windows
    fit = seen[-1]
    assert fit["windows"] >= FIT_WINDOWS and fit["below_warning"] * 2 < fit["windows"]
    assert "remove fleet.prior" in fit["note"] and "baseline reset" in fit["note"]
    said = [line for line in log.lines if line[1] == "fleet prior does not fit this machine"]
    assert len(said) == 1 and said[0][0] == "warning"  # once, not on every status


def test_a_machine_like_the_donors_hears_nothing(tmp_path):
    cfg, names = prior_cfg(tmp_path)
    seen, log = run_new_machine(cfg, names, level=0.0)
    assert all(s is None for s in seen)
    assert not [line for line in log.lines if "does not fit" in line[1]]
