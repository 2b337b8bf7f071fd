"""`fleet.privacy`: clipped sums, their sensitivities, OpenDP noise on shares, private merges, config rules."""

from __future__ import annotations

import json
import math
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from agent.config import ConfigError, parse_config
from agent.config_fleet import SharePrivacy
from agent.fleet_privacy import clip_bounds, private_detector
from agent.fleet_share import SHARE_KEYS, FleetShare, merge, share_payload
from models import registry
from models.gaussian import GaussianDetector, is_log_feature
from models.pooling import PoolingError, pool, stats_of
from models.prior import prior_model
from models.private_stats import release, sensitivities
from models.streaming import StreamingModel
from fleet_helpers import RecordingLog as Log, numbers as _numbers

FEATURES = ["ax.rms_g", "ax.kurtosis", "ax.band_1_2k_g2", "ax.skewness", "temp.mean_c"]
# Declared as a machine type's specification would: wider than any healthy window, not from the data.
BOUNDS = {"ax.rms_g": [0.5, 2.0], "ax.kurtosis": [1.0, 10.0], "ax.band_1_2k_g2": [0.005, 0.2],
          "ax.skewness": [-1.0, 1.0], "temp.mean_c": [20.0, 60.0]}


def vectors(seed: int, n: int, shift: float = 0.0) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, len(FEATURES)))
    mixed = base @ (np.eye(len(FEATURES)) + 0.3 * rng.normal(size=(len(FEATURES), len(FEATURES))))
    return [{"ax.rms_g": math.exp(0.1 * r[0] + shift), "ax.kurtosis": math.exp(1.1 + 0.05 * r[1]),
             "ax.band_1_2k_g2": math.exp(-3 + 0.2 * r[2] + shift), "ax.skewness": 0.1 * r[3],
             "temp.mean_c": 40 + 10 * shift + r[4]} for r in mixed]


def transformed(data, keys=FEATURES) -> np.ndarray:
    """The detector's space: logs of the log features (models/gaussian.py)."""
    x = np.array([[row[k] for k in keys] for row in data], dtype=float)
    for j, k in enumerate(keys):
        if is_log_feature(k):
            x[:, j] = np.log(x[:, j])
    return x


def box(bounds=BOUNDS, keys=FEATURES) -> tuple[np.ndarray, np.ndarray]:
    low = np.array([math.log(bounds[k][0]) if is_log_feature(k) else bounds[k][0] for k in keys])
    high = np.array([math.log(bounds[k][1]) if is_log_feature(k) else bounds[k][1] for k in keys])
    return low, high


def learned(data, clip=BOUNDS) -> GaussianDetector:
    det = GaussianDetector(clip=clip)
    for x in data:
        det.learn(x)
    return det


def privacy(epsilon: float = 1.0, bounds=BOUNDS, **kw) -> SharePrivacy:
    return SharePrivacy(epsilon=epsilon, bounds={k: tuple(v) for k, v in bounds.items()}, **kw)


def streaming(data, clip=BOUNDS, learn_seconds: float = 100.0) -> StreamingModel:
    det = registry.create("gaussian", agent_params={"clip": clip} if clip is not None else None)
    m = StreamingModel(det, learn_seconds=learn_seconds, adapt_half_life_s=86400.0)
    for i, x in enumerate(data):
        m.update(x, ts=1.8e9 + i)
    return m


def share(m: StreamingModel, device: str, p: SharePrivacy | None) -> dict:
    return share_payload(m.state(), device=device, sensor="pump1", machine_type="pump-a", window_s=1.0,
                         agent_version="t", learned_at=m.baseline()["learned_at"], privacy=p)


def _identity(v):
    return list(v)


def test_release_without_noise_is_the_clipped_mean_and_covariance():
    data = vectors(1, 300)
    data[5] = {**data[5], "ax.rms_g": 50.0, "temp.mean_c": -40.0}  # outside the declared bounds
    sums, unbounded = learned(data).clipped()
    assert unbounded == [] and sums.n == 300 and sums.keys == tuple(FEATURES)
    low, high = box()
    x = transformed(data)
    clipped = np.clip(x, low, high)
    assert (clipped != x).any()  # the data do reach outside the box: the clipping is exercised
    for covariance in ("full", "diagonal"):
        out = release(sums, _identity, covariance)
        assert out["n"] == 300
        np.testing.assert_allclose(out["mean"], clipped.mean(axis=0), rtol=1e-10, atol=1e-12)
        expected = np.cov(clipped.T, bias=True)
        if covariance == "diagonal":
            expected = np.diag(np.diag(expected))
        np.testing.assert_allclose(out["cov"], expected, rtol=1e-8, atol=1e-10)
        assert out["sensitivity"] == dict(zip(("sum", "outer"), sensitivities(low, high, covariance)))


def test_one_extreme_window_moves_the_released_mean_by_at_most_its_sensitivity_over_n():
    data = vectors(2, 200)
    extreme = list(data)
    extreme[0] = {k: 1e6 for k in FEATURES}  # a broken sensor, a fault, an outlier: any one window
    a, b = learned(data), learned(extreme)
    low, high = box()
    s_total, _ = sensitivities(low, high)
    moved = np.linalg.norm(release(b.clipped()[0], _identity)["mean"] - release(a.clipped()[0], _identity)["mean"])
    assert 0 < moved <= s_total / 200 * (1 + 1e-12)
    # The detector's own (unclipped) mean moves far more: without clipping no noise could hide it.
    unclipped = np.linalg.norm(np.array(b.state()["mean"]) - np.array(a.state()["mean"]))
    assert unclipped > 10 * s_total / 200


@pytest.mark.parametrize("d", [1, 3, 6])
def test_stated_sensitivities_bound_every_pair_of_windows_in_the_box(d):
    rng = np.random.default_rng(100 + d)
    low = rng.uniform(-5, 3, d)
    high = low + rng.uniform(0.1, 8, d)
    h = (high - low) / 2
    s_total, s_full = sensitivities(low, high, "full")
    s_total_diag, s_diag = sensitivities(low, high, "diagonal")
    assert s_total == s_total_diag
    rows, cols = np.triu_indices(d)
    inside = rng.uniform(-1, 1, (3000, d)) * h
    corners = rng.choice([-1.0, 1.0], (1000, d)) * h  # where the differences are largest
    points = np.concatenate([inside, corners, np.zeros((1, d))])
    worst = np.zeros(4)
    for _ in range(4000):
        x, y = points[rng.integers(len(points), size=2)]
        outer = np.outer(x, x) - np.outer(y, y)
        worst = np.maximum(worst, [np.linalg.norm(x - y) / s_total, np.linalg.norm(outer[rows, cols]) / s_full,
                                   np.linalg.norm(outer) / s_full, np.linalg.norm(x * x - y * y) / s_diag])
    assert (worst <= 1 + 1e-12).all(), worst
    # Opposite corners reach the sum's bound: it is not loose.
    assert np.linalg.norm(h - (-h)) == pytest.approx(s_total)
    assert worst[0] > 0.9


def _learned_d2(n: int = 100) -> tuple[GaussianDetector, dict]:
    bounds = {"a.rms_g": [0.1, 10.0], "t.mean_c": [0.0, 100.0]}
    rng = np.random.default_rng(7)
    det = GaussianDetector(clip=bounds)
    for _ in range(n):
        det.learn({"a.rms_g": float(rng.lognormal(0, 0.1)), "t.mean_c": float(40 + rng.normal())})
    return det, bounds


def test_shared_statistics_are_noised_by_opendp_at_the_stated_scale(monkeypatch):
    import opendp.prelude as dp

    import agent.fleet_privacy as fp
    from agent.privacy import measurement

    # Enough windows that the noise stays well inside the bounds (released means are held to them).
    det, bounds = _learned_d2(2000)
    p = privacy(1.0, bounds, covariance="diagonal")
    state = det.state()
    first, block = private_detector(state, p, "gw-a/pump1")
    second, _ = private_detector(state, p, "gw-a/pump1")
    assert first["mean"] != second["mean"] and first["cov"] != second["cov"]  # fresh noise each release
    assert first["n"] == second["n"] == 2000 and block["library"].startswith("opendp ")
    sums = det.clipped()[0]
    s_total, _ = sensitivities(sums.low, sums.high, "diagonal")
    assert block["sensitivity"]["sum"] == pytest.approx(s_total) and block["covariance"] == "diagonal"

    # The measurement is built by a binary search (0.2 s); build it once for the 200 releases below.
    # Every release still draws from OpenDP's sampler.
    built = {}
    real = fp._noise

    def once(priv, d):
        key = (priv.epsilon, priv.delta, priv.covariance, d)
        if key not in built:
            built[key] = real(priv, d)
        return built[key]

    monkeypatch.setattr(fp, "_noise", once)
    means = np.array([private_detector(state, p, "gw-a/pump1")[0]["mean"] for _ in range(200)])
    dp.enable_features("contrib")
    _, scale = measurement(dp, "gaussian", p.epsilon, p.delta, 4, math.sqrt(2.0))  # d=2: 2 sums + 2 squares
    expected_sd = scale * s_total / sums.n
    got_sd = (means - means.mean(axis=0)).std(axis=0, ddof=1)
    assert 0.8 < got_sd.min() / expected_sd and got_sd.max() / expected_sd < 1.25, (got_sd, expected_sd)
    clipped_mean = release(sums, _identity, "diagonal")["mean"]
    assert np.all(np.abs(means.mean(axis=0) - clipped_mean) < 4 * expected_sd / math.sqrt(200))  # unbiased
    # Less privacy, less noise: epsilon 8 releases far closer to the clipped mean.
    loose = np.array([private_detector(state, privacy(8.0, bounds, covariance="diagonal"), "x")[0]["mean"] for _ in range(50)])
    assert loose.std(axis=0).max() < 0.5 * got_sd.min()




def test_private_share_holds_noised_statistics_a_privacy_block_and_no_quantiles():
    m = streaming(vectors(3, 200))
    p = privacy(1.0, covariance="full")
    payload = share(m, "gw-a", p)
    assert set(payload) == SHARE_KEYS
    assert set(payload["detector"]) == {"name", "version", "params", "keys", "n", "mean", "cov"}
    assert "clip" not in payload["detector"]["params"]
    assert payload["detector"]["n"] == m.baseline()["windows"] == 100
    assert set(payload["calibration"]) == {"quantile", "alarm_ratio"}  # no median, no tail of this machine's scores
    block = payload["privacy"]
    assert {k: block[k] for k in ("mechanism", "epsilon", "delta", "unit", "covariance")} == {
        "mechanism": "gaussian", "epsilon": 1.0, "delta": 1e-6, "unit": "window", "covariance": "full"}
    assert block["bounds"] == BOUNDS
    state = m.state()
    exact = state["reference"] or state["detector"]
    c = exact["clipped"]
    learned_values = {round(v, 9) for v in _numbers([exact["mean"], exact["cov"], c["total"], c["outer"]])}
    assert exact["n"] == c["n"] == 100 and len(learned_values) > 20
    shared = list(_numbers([payload["detector"]["mean"], payload["detector"]["cov"]]))
    assert len(shared) == 5 + 25 and [v for v in shared if round(v, 9) in learned_values] == []
    exact_share = share(m, "gw-a", None)
    assert exact_share["detector"]["mean"] == exact["mean"]  # the same baseline without privacy: exact
    assert exact_share["privacy"] is None and "median" in exact_share["calibration"]


def test_private_shares_are_refused_in_words_when_they_cannot_be_made():
    data = vectors(4, 200)
    with pytest.raises(PoolingError, match="learned without fleet.privacy.*`pdm-agent baseline reset`"):
        share(streaming(data, clip=None), "gw-a", privacy())
    changed = {**BOUNDS, "ax.rms_g": [0.5, 3.0]}
    with pytest.raises(PoolingError, match=r"other bounds than fleet.privacy.bounds declares now \(ax.rms_g\).*"
                                           "baseline reset"):
        share(streaming(data), "gw-a", privacy(bounds=changed))
    partial = {k: v for k, v in BOUNDS.items() if k != "temp.mean_c"} | {"ax.kurtosis": [0.0, 10.0]}
    with pytest.raises(PoolingError, match=r"2 feature\(s\) have no usable bounds.*ax.kurtosis, temp.mean_c"):
        share(streaming(data, clip=partial), "gw-a", privacy(bounds=partial))


def test_private_shares_merge_into_a_psd_prior_calibrated_from_the_statistics():
    ms = [streaming(vectors(10 + i, 200, shift=0.05 * i)) for i in range(3)]
    eps = [0.5, 1.0, 2.0]
    shares = [(f"s{i}", share(m, f"gw-{i}", privacy(e, covariance="full"))) for i, (m, e) in enumerate(zip(ms, eps))]
    exact = ("x", share(streaming(vectors(20, 200)), "gw-x", None))
    with pytest.raises(PoolingError, match=r"private and exact shares cannot be merged.*\(exact: x\)"):
        merge([*shares, exact], "pump-a")
    doc = merge(shares, "pump-a")
    det = doc["detector"]
    assert det["n"] == 300 and det["keys"] == FEATURES
    released = pool([stats_of(s["detector"]) for _, s in shares])
    np.testing.assert_allclose(det["mean"], released.mean)  # pooled as released
    # Noise this large (100 windows, wide bounds) leaves a share's covariance indefinite; the prior's is not.
    assert min(np.linalg.eigvalsh(np.array(s["detector"]["cov"])).min() for _, s in shares) < 0
    assert np.linalg.eigvalsh(np.array(det["cov"])).min() >= -1e-9
    assert doc["privacy"]["shares"] == [{"device": f"gw-{i}", "sensor": "pump1", "epsilon": e, "delta": 1e-6,
                                         "covariance": "full"} for i, e in enumerate(eps)]
    assert doc["privacy"]["unit"] == "window" and doc["privacy"]["calibration"] == "fleet-private"
    cal = doc["calibration"]
    assert cal["method"] == "fleet-private" and 0 < cal["median"] < cal["tail"]
    new = prior_model(doc, learn_seconds=100.0, adapt_half_life_s=None, cadence_s=1.0)
    score, ready, _ = new.update(vectors(30, 1)[0], ts=2e9)
    assert ready and math.isfinite(score) and new.baseline()["calibration"]["method"] == "fleet-private"




def test_a_restart_republishes_the_kept_private_share_under_the_configured_machine_type(tmp_path):
    """FleetShare keeps a private share in the storage dir: a restarted agent (a new FleetShare)
    publishes the same bytes instead of noising the same baseline again. Renamed machine type: the
    same release, relabelled (the share must name its topic's type). A damaged kept file: a new release."""
    from agent.hotswap import sensor_features
    from agent.pipeline import SensorPipeline

    bounds = "{'*.skewness': [-5, 5], 'temp.*': [-100, 200], '*': [0.0001, 10000]}"

    logs = []

    def agent(machine_type="pump-a", epsilon=1):
        cfg = parse_config("device: {id: gw-1}\nsensors: [{name: pump1, protocol: sim}]\nfleet: {share_baseline: true, "
                           f"machine_type: {machine_type}, privacy: {{epsilon: {epsilon}, bounds: {bounds}}}}}\n",
                           "c.yaml")
        s = cfg.sensors[0]
        pipe = SensorPipeline(device="gw-1", sensor_cfg=s, aggregate_interval=60.0, emit=lambda r: None)
        clip = clip_bounds(cfg, s)
        names = sensor_features(s)
        assert set(clip) == set(names)
        rng = np.random.default_rng(40)
        model = StreamingModel(registry.create("gaussian", agent_params={"clip": clip}), learn_seconds=100.0,
                               adapt_half_life_s=86400.0)
        for i in range(110):
            model.update(dict(zip(names, rng.lognormal(0, 0.1, len(names)).tolist())), ts=1.8e9 + i)
        pipe.model = model
        logs.append(Log())
        return FleetShare(logs[-1], "t", str(tmp_path)).messages(cfg, {s.name: SimpleNamespace(
            pipeline=pipe, lock=threading.Lock(), cfg=s)})

    (topic, first), = agent()
    kept = tmp_path / "fleet-share-pump1.json"
    assert topic == "pdm/fleet/pump-a/baseline/gw-1/pump1" and kept.exists()
    assert json.loads(kept.read_text())["payload"] == json.loads(first)
    (_, again), = agent()  # the same baseline, learned again from the same windows (a restart)
    assert again == first
    (topic, renamed), = agent("pump-b")
    assert topic == "pdm/fleet/pump-b/baseline/gw-1/pump1" and json.loads(renamed)["machine_type"] == "pump-b"
    assert json.loads(renamed)["detector"] == json.loads(first)["detector"]  # not noised again
    merge([("b", json.loads(renamed))], "pump-b")  # a share of its topic's type merges
    # Other privacy settings: the same windows are not released again (losses would add up); said once.
    (_, stricter), = agent(epsilon=0.5)
    assert json.loads(stricter)["detector"] == json.loads(first)["detector"]
    assert json.loads(stricter)["privacy"]["epsilon"] == 1
    said = [event for event, kw in logs[-1].lines if event.startswith("fleet.privacy changed")]
    assert len(said) == 1 and "next baseline" in said[0]
    kept.write_text("[]")
    (_, fresh), = agent()
    assert json.loads(fresh)["detector"]["mean"] != json.loads(first)["detector"]["mean"]
    assert json.loads(kept.read_text())["payload"] == json.loads(fresh)


MINIMAL = "device: {id: gw1}\nsensors: [{name: pump1, protocol: sim}]\n"
ALL = "{'*.skewness': [-5, 5], 'temp.*': [-100, 200], '*': [0.0001, 10000]}"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return info.value.errors


def test_config_refuses_privacy_without_sharing_missing_bounds_and_log_features_from_zero():
    assert parse_config(MINIMAL + f"fleet: {{share_baseline: true, machine_type: pump-a, privacy: {{epsilon: 1, "
                                  f"bounds: {ALL}}}}}\n", "c.yaml").fleet.privacy.delta == 1e-6
    err, = errors_of(MINIMAL + f"fleet: {{machine_type: pump-a, privacy: {{epsilon: 1, bounds: {ALL}}}}}\n")
    assert err.startswith("fleet.privacy: ") and "share_baseline: true" in err and "(c.yaml:3)" in err
    no_temp = "{'*.skewness': [-5, 5], '*_g': [0.0001, 100], '*_g2': [1e-9, 100], '*.kurtosis': [1, 100], " \
              "'*.crest_factor': [1, 100], '*.velocity_rms_mm_s': [0.001, 100]}"
    err, = errors_of(MINIMAL + f"fleet: {{share_baseline: true, machine_type: pump-a, privacy: {{epsilon: 1, "
                               f"bounds: {no_temp}}}}}\n")
    assert err.startswith("fleet.privacy.bounds: 2 of sensor pump1's features have no bounds: ")
    assert "temp.mean_c, temp.slope_c_per_min" in err
    zero = "{'*.skewness': [-5, 5], 'temp.*': [-100, 200], '*': [0, 10000]}"
    err, = errors_of(MINIMAL + f"fleet: {{share_baseline: true, machine_type: pump-a, privacy: {{epsilon: 1, "
                               f"bounds: {zero}}}}}\n")
    assert err.startswith("fleet.privacy.bounds: ax.rms_g") and "low bound must be above 0 (got 0)" in err


def test_fleet_bounds_from_a_reference_share_gives_bounds_a_private_share_is_made_with(tmp_path):
    """What a user does: an exact share of a reference machine -> `pdm-agent fleet bounds` -> the
    YAML as fleet.privacy.bounds of the machines that share privately. A private share is refused."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps(share(streaming(vectors(50, 200), clip=None), "bench", None)))
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "bounds", str(reference), "--k", "6"],
                         cwd=root, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    bounds = yaml.safe_load(run.stdout)["bounds"]
    assert set(bounds) == set(FEATURES) and all(bounds[k][0] > 0 for k in FEATURES if is_log_feature(k))
    assert "--tail-ratio" in run.stdout
    donor = vectors(51, 200, shift=0.02)  # another machine of the type: its windows mostly inside
    low, high = box(bounds)
    assert (np.clip(transformed(donor), low, high) == transformed(donor)).mean() > 0.95
    payload = share(streaming(donor, clip=bounds), "gw-a", privacy(1.0, bounds))
    assert payload["privacy"]["bounds"] == {k: [float(v) for v in bounds[k]] for k in FEATURES}
    private = tmp_path / "private.json"
    private.write_text(json.dumps(payload))
    run = subprocess.run([sys.executable, "-m", "agent.cli", "fleet", "bounds", str(private)], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "a private share" in run.stderr and "Traceback" not in run.stderr


def test_released_means_and_variances_stay_within_what_clipped_windows_can_have():
    """Heavy noise (few windows, small epsilon): the released mean is held inside the bounds and each
    variance below the half-width squared (post-processing), instead of landing far outside."""
    det, bounds = _learned_d2(10)
    sums = det.clipped()[0]
    h = (sums.high - sums.low) / 2.0
    for _ in range(20):
        shared, _ = private_detector(det.state(), privacy(0.1, bounds), "gw-a/pump1")
        mean, cov = np.array(shared["mean"]), np.array(shared["cov"])
        assert np.all(mean >= sums.low - 1e-12) and np.all(mean <= sums.high + 1e-12)
        assert np.all(np.diag(cov) <= h * h + 1e-12)


def test_full_and_diagonal_private_shares_are_not_merged():
    data = [vectors(60 + i, 150) for i in range(2)]
    a = share(streaming(data[0]), "gw-a", privacy(5.0, covariance="diagonal"))
    b = share(streaming(data[1]), "gw-b", privacy(5.0, covariance="full"))
    with pytest.raises(PoolingError, match="covariance 'full' and 'diagonal'"):
        merge([("a", a), ("b", b)], "pump-a")
