import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.features import G, FeatureSpec, extract, extract_batch, feature_names

RATE = 3200.0
N = 4096
T = np.arange(N) / RATE
SPEC = FeatureSpec.for_channels(RATE, ("ax", "ay", "az", "temp"))
ONE = FeatureSpec(RATE, ("ax",))


def features_of(x: np.ndarray, spec: FeatureSpec = ONE) -> dict[str, float]:
    return extract(np.asarray(x, dtype=float).reshape(len(x), -1), spec)


def sine(freq: float, amplitude: float = 1.0, phase: float = 0.3) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * T + phase)


def expected_velocity_mm_s(freq: float, amplitude_g: float) -> float:
    return amplitude_g * G / (2 * np.pi * freq) / np.sqrt(2) * 1000.0


def impacts(rms: float, seed: int = 0) -> np.ndarray:
    """An outer-race-like signal: a 1200 Hz resonance rung every 1/87 s, decaying in ~1 ms,
    over a little noise, scaled to the given RMS."""
    rng = np.random.default_rng(seed)
    x = np.zeros(N)
    for start in np.arange(0, T[-1], 1 / 87.0):
        tail = T[T >= start] - start
        x[T >= start] += np.exp(-tail / 0.001) * np.sin(2 * np.pi * 1200.0 * tail)
    x += rng.normal(0, 0.02, N)
    x -= x.mean()
    return x * rms / x.std()


# -- names ------------------------------------------------------------------------------


def test_names_are_stable_and_match_extract_keys():
    names = feature_names(SPEC)
    assert names == feature_names(FeatureSpec.for_channels(RATE, ("ax", "ay", "az", "temp")))
    window = np.random.default_rng(1).normal(size=(N, 4))
    assert list(extract(window, SPEC)) == names
    assert names[:5] == ["ax.rms_g", "ax.peak_g", "ax.crest_factor", "ax.kurtosis", "ax.skewness"]
    assert "az.velocity_rms_mm_s" in names and "ay.envelope_rms_g" in names
    assert "ax.band_1000_1600_g2" in names
    assert names[-2:] == ["temp.mean_c", "temp.slope_c_per_min"]
    assert not any(n.startswith("temp.") and "rms" in n for n in names)


def test_channel_order_is_respected_when_temperature_comes_first():
    spec = FeatureSpec(RATE, ("temp", "ax"), ("temp",))
    window = np.column_stack([np.full(N, 21.5), sine(50.0)])
    f = extract(window, spec)
    assert list(f)[:2] == ["temp.mean_c", "temp.slope_c_per_min"]
    assert f["temp.mean_c"] == pytest.approx(21.5)
    assert f["ax.rms_g"] == pytest.approx(1 / np.sqrt(2), rel=1e-3)


# -- time-domain shape ------------------------------------------------------------------


@pytest.mark.parametrize("amplitude,freq", [(1.0, 50.0), (0.3, 160.0), (2.5, 437.0)])
def test_rms_and_crest_factor_of_a_sine(amplitude, freq):
    f = features_of(sine(freq, amplitude) + 1.0)  # + 1 g of gravity: not vibration
    assert f["ax.rms_g"] == pytest.approx(amplitude / np.sqrt(2), rel=2e-3)
    assert f["ax.peak_g"] == pytest.approx(amplitude, rel=2e-3)
    assert f["ax.crest_factor"] == pytest.approx(np.sqrt(2), rel=3e-3)
    assert f["ax.kurtosis"] == pytest.approx(1.5, rel=5e-3)
    assert f["ax.skewness"] == pytest.approx(0.0, abs=0.01)


def test_gaussian_noise_has_kurtosis_three_and_no_skew():
    x = np.random.default_rng(2).normal(0.0, 0.7, (8, N))
    rows = extract_batch(x[:, :, None], ONE)
    names = feature_names(ONE)
    kurt = rows[:, names.index("ax.kurtosis")].mean()
    skew = rows[:, names.index("ax.skewness")].mean()
    assert kurt == pytest.approx(3.0, abs=0.08)
    assert skew == pytest.approx(0.0, abs=0.05)
    assert rows[:, names.index("ax.rms_g")].mean() == pytest.approx(0.7, rel=0.01)


def test_skewness_sign_follows_one_sided_spikes():
    x = np.zeros(N)
    x[::200] = 1.0
    assert features_of(x)["ax.skewness"] > 3
    assert features_of(-x)["ax.skewness"] < -3


def test_constant_signal_is_finite_and_reads_as_nothing_unusual():
    window = np.column_stack([np.full(N, 0.1), np.zeros(N), np.full(N, 1.0), np.full(N, 25.0)])
    f = extract(window, SPEC)
    assert all(np.isfinite(v) for v in f.values())
    for ch in ("ax", "ay", "az"):
        assert (f[f"{ch}.crest_factor"], f[f"{ch}.kurtosis"], f[f"{ch}.skewness"]) == (0.0, 3.0, 0.0)
        assert f[f"{ch}.rms_g"] == 0.0 and f[f"{ch}.velocity_rms_mm_s"] == 0.0
    assert f["temp.slope_c_per_min"] == pytest.approx(0.0, abs=1e-9)


def test_values_are_python_floats():
    f = extract(np.random.default_rng(3).normal(size=(N, 4)), SPEC)
    assert all(type(v) is float for v in f.values())


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (64, 2), elements=st.floats(-50, 50, allow_subnormal=False)))
def test_any_finite_window_gives_finite_features(window):
    spec = FeatureSpec(1000.0, ("ax", "temp"), ("temp",))
    assert all(np.isfinite(v) for v in extract(window, spec).values())


# -- spectra ----------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [12.0, 50.0, 160.0, 163.3, 700.0, 990.0])
def test_velocity_rms_of_a_sine_inside_the_band(freq):
    amplitude = 0.8
    f = features_of(sine(freq, amplitude) + 1.0)
    assert f["ax.velocity_rms_mm_s"] == pytest.approx(expected_velocity_mm_s(freq, amplitude), rel=0.02)


@pytest.mark.parametrize("freq", [3.0, 5.0, 1200.0, 1500.0])
def test_velocity_rms_ignores_a_sine_outside_the_band(freq):
    f = features_of(sine(freq, 0.8))
    # Compared with what the same sine would read if the band included it.
    assert f["ax.velocity_rms_mm_s"] < 0.01 * expected_velocity_mm_s(freq, 0.8)


def test_velocity_is_linear_and_adds_in_quadrature():
    a, b = sine(50.0, 0.5), sine(300.0, 0.5, phase=1.0)
    va = features_of(a)["ax.velocity_rms_mm_s"]
    vb = features_of(b)["ax.velocity_rms_mm_s"]
    assert features_of(2 * a)["ax.velocity_rms_mm_s"] == pytest.approx(2 * va, rel=1e-9)
    assert features_of(a + b)["ax.velocity_rms_mm_s"] == pytest.approx(np.hypot(va, vb), rel=0.01)


@pytest.mark.parametrize(
    "freq,band",
    [
        (40.0, "band_10_100_g2"),
        (250.0, "band_100_500_g2"),
        (777.7, "band_500_1000_g2"),
        (1450.0, "band_1000_1600_g2"),
    ],
)
def test_band_energy_lands_in_the_right_band(freq, band):
    amplitude = 1.5
    f = features_of(sine(freq, amplitude))
    bands = {k.split(".")[1]: v for k, v in f.items() if ".band_" in k}
    assert bands[band] == pytest.approx(amplitude**2 / 2, rel=0.01)
    others = sum(v for k, v in bands.items() if k != band)
    assert others < 1e-3 * bands[band]


def test_band_energies_of_white_noise_add_up_to_its_mean_square():
    x = np.random.default_rng(4).normal(0.0, 1.0, (16, N))
    names = feature_names(ONE)
    rows = extract_batch(x[:, :, None], ONE).mean(axis=0)
    total = sum(v for name, v in zip(names, rows) if ".band_" in name)
    # Only the 0-10 Hz bins (0.6 % of the spectrum) fall outside every band.
    assert total == pytest.approx(1.0, rel=0.03)
    assert rows[names.index("ax.band_100_500_g2")] == pytest.approx(400 / 1600, rel=0.05)


def test_custom_bands_are_named_and_used():
    spec = FeatureSpec(RATE, ("ax",), bands=((45.0, 55.0), (55.0, 1600.0)))
    f = extract(sine(50.0, 2.0).reshape(-1, 1), spec)
    assert f["ax.band_45_55_g2"] == pytest.approx(2.0, rel=0.01)
    assert f["ax.band_55_1600_g2"] < 1e-3


def test_spec_refuses_what_cannot_be_computed():
    with pytest.raises(ValueError, match="Nyquist"):
        FeatureSpec(1000.0, ("ax",), bands=((100.0, 800.0),))
    with pytest.raises(ValueError, match="not in channels"):
        FeatureSpec(1000.0, ("ax",), ("temp",))
    with pytest.raises(ValueError, match="no '.'"):
        FeatureSpec(1000.0, ("a.x",))


def test_slow_sample_rate_cuts_the_default_bands_at_nyquist():
    spec = FeatureSpec(1000.0, ("ax",))
    assert spec.velocity_band == (10.0, 500.0)
    assert max(hi for _, hi in spec.bands) == 500.0


# -- bearing faults ---------------------------------------------------------------------


def test_periodic_impacts_raise_kurtosis_and_envelope_over_noise_of_equal_rms():
    rms = 0.2
    noise = np.random.default_rng(5).normal(0.0, rms, N)
    hit = features_of(impacts(rms))
    calm = features_of(noise)
    assert hit["ax.rms_g"] == pytest.approx(calm["ax.rms_g"], rel=0.02)
    assert hit["ax.kurtosis"] > 2 * calm["ax.kurtosis"]
    assert hit["ax.envelope_rms_g"] > 1.6 * calm["ax.envelope_rms_g"]
    assert hit["ax.crest_factor"] > calm["ax.crest_factor"]


def test_envelope_of_an_amplitude_modulated_carrier():
    # (1 + m cos(2 pi fm t)) sin(2 pi fc t): the envelope's AC RMS is m / sqrt(2).
    m, fc, fm = 0.5, 1000.0, 87.5
    x = (1 + m * np.cos(2 * np.pi * fm * T)) * np.sin(2 * np.pi * fc * T)
    assert features_of(x)["ax.envelope_rms_g"] == pytest.approx(m / np.sqrt(2), rel=0.03)


# -- temperature ------------------------------------------------------------------------


def test_temperature_mean_and_slope_of_a_linear_ramp():
    spec = FeatureSpec(10.0, ("temp",), ("temp",))
    t = np.arange(600) / 10.0  # one minute at 10 Hz
    noise = np.random.default_rng(6).normal(0, 0.05, t.size)
    f = extract((35.0 + 1.5 * t / 60.0 + noise).reshape(-1, 1), spec)
    assert f["temp.slope_c_per_min"] == pytest.approx(1.5, rel=0.03)
    assert f["temp.mean_c"] == pytest.approx(35.75, abs=0.01)


# -- batch ------------------------------------------------------------------------------


def test_batch_rows_equal_single_extracts():
    windows = np.random.default_rng(7).normal(size=(5, 1024, 4))
    windows[:, :, 3] += 40
    rows = extract_batch(windows, SPEC)
    assert rows.shape == (5, len(feature_names(SPEC)))
    for row, window in zip(rows, windows):
        np.testing.assert_allclose(row, list(extract(window, SPEC).values()), rtol=1e-12, atol=1e-12)


def test_odd_and_short_windows_work():
    for n in (8, 9, 1001):
        window = np.random.default_rng(n).normal(size=(n, 4))
        assert all(np.isfinite(v) for v in extract(window, SPEC).values())
    with pytest.raises(ValueError, match="at least"):
        extract(np.zeros((4, 4)), SPEC)
