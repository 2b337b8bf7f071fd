"""The simulated machine: the physics of each fault as a vibration analyst would check it, and the pty."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import serial

from drivers.pty_server import format_lines, serve
from drivers.simulator import FAULTS, Machine, defect_frequencies

RATE = 3200.0
RPM = 1780.0
SHAFT_HZ = RPM / 60.0


def window(fault, seconds=2.0, settle=7.0, seed=3, **kw):
    """`seconds` of data taken after the fault (at t=0) has reached full severity."""
    m = Machine(rate=RATE, rpm=RPM, seed=seed, fault=fault, **kw)
    m.generate(int(settle * RATE))
    return m, m.generate(int(seconds * RATE))


def kurtosis(x):
    x = x - x.mean()
    return np.mean(x**4) / np.mean(x**2) ** 2


def velocity_rms_mm_s(accel_g, rate, lo=10.0, hi=1000.0):
    """Integrate acceleration to velocity in the frequency domain over the ISO 10816 band."""
    spec = np.fft.rfft(accel_g - accel_g.mean())
    f = np.fft.rfftfreq(len(accel_g), 1 / rate)
    band = (f >= lo) & (f <= hi)
    vel = np.zeros_like(spec)
    vel[band] = spec[band] * 9806.65 / (2j * np.pi * f[band])
    return np.sqrt(np.mean(np.fft.irfft(vel, len(accel_g)) ** 2))


def envelope_spectrum(x, rate, lo, hi):
    """|analytic signal of x band-passed to [lo, hi]| -> amplitude spectrum of the envelope."""
    spec = np.fft.fft(x - x.mean())
    f = np.fft.fftfreq(len(x), 1 / rate)
    gain = np.where((f >= lo) & (f <= hi), 2.0, 0.0)  # band-pass and Hilbert in one mask
    env = np.abs(np.fft.ifft(spec * gain))
    return np.fft.rfftfreq(len(env), 1 / rate), np.abs(np.fft.rfft(env - env.mean())) / len(env)


def amplitude_at(x, rate, freq):
    """Peak amplitude of the spectral line nearest `freq` (Hann window, +-2 bins)."""
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft((x - x.mean()) * w)) * 2 / w.sum()
    f = np.fft.rfftfreq(len(x), 1 / rate)
    k = np.argmin(np.abs(f - freq))
    return spec[k - 2 : k + 3].max()


def envelope_peak(machine, x):
    f, env = envelope_spectrum(x, RATE, machine.resonance_hz - 400, machine.resonance_hz + 400)
    search = (f > 1.5 * SHAFT_HZ) & (f < 500)  # above the shaft line, below the 3rd defect harmonic
    k = np.argmax(np.where(search, env, 0))
    return f, env, k, env[k] / np.median(env[search])


def test_defect_frequencies_match_the_6205_ratios():
    f = defect_frequencies(60.0)  # 1 Hz shaft: the values are the well-known orders
    assert f["bpfo"] == pytest.approx(3.585, abs=1e-3)
    assert f["bpfi"] == pytest.approx(5.415, abs=1e-3)
    assert f["ftf"] == pytest.approx(0.398, abs=1e-3)
    assert f["bpfo"] + f["bpfi"] == pytest.approx(9.0)  # n_balls times the shaft speed


def test_shape_gravity_and_temperature_around_40_c():
    m, x = window(None, settle=0.0)
    assert x.shape == (int(2 * RATE), 4) and x.dtype == np.float64
    assert x[:, 2].mean() == pytest.approx(1.0, abs=0.01)
    assert abs(x[:, 0].mean()) < 0.01 and abs(x[:, 1].mean()) < 0.01
    assert 35.0 < x[:, 3].mean() < 45.0
    assert x[:, 3].std() < 0.2


def test_healthy_velocity_rms_is_iso_zone_a_b():
    _, x = window(None, seconds=4.0, settle=0.0)
    for axis in (0, 1):
        assert 0.7 < velocity_rms_mm_s(x[:, axis], RATE) < 2.8


def test_imbalance_raises_1x_radially_into_zone_c_d():
    _, healthy = window(None)
    _, faulty = window("imbalance")
    for axis in (0, 1):
        ratio = amplitude_at(faulty[:, axis], RATE, SHAFT_HZ) / amplitude_at(healthy[:, axis], RATE, SHAFT_HZ)
        assert ratio > 4.0
        assert velocity_rms_mm_s(faulty[:, axis], RATE) > 4.5  # zone D boundary for group 2, rigid
    # 2x is a misalignment/looseness symptom, not imbalance: it stays put
    assert amplitude_at(faulty[:, 0], RATE, 2 * SHAFT_HZ) < 1.5 * amplitude_at(healthy[:, 0], RATE, 2 * SHAFT_HZ)


def test_outer_race_raises_kurtosis_and_shows_bpfo_in_the_envelope():
    _, healthy = window(None)
    m, faulty = window("outer-race")
    assert kurtosis(healthy[:, 0]) < 3.5
    assert kurtosis(faulty[:, 0]) > 2 * kurtosis(healthy[:, 0])
    f, env, k, prominence = envelope_peak(m, faulty[:, 0])
    bin_hz = f[1]
    assert abs(f[k] - defect_frequencies(RPM)["bpfo"]) <= 2 * bin_hz
    assert prominence > 20
    assert envelope_peak(m, healthy[:, 0])[3] < 8  # no line stands out in a healthy envelope


def test_inner_race_shows_bpfi_with_shaft_sidebands():
    m, x = window("inner-race")
    f, env, k, prominence = envelope_peak(m, x[:, 0])
    bpfi = defect_frequencies(RPM)["bpfi"]
    assert abs(f[k] - bpfi) <= 2 * f[1]
    assert prominence > 20
    floor = np.median(env[(f > 20) & (f < 500)])
    for side in (f[k] - SHAFT_HZ, f[k] + SHAFT_HZ):  # the defect passes the load zone once per turn
        near = np.abs(f - side) <= 2 * f[1]
        assert env[near].max() > 5 * floor


def test_overheat_ramps_temperature_after_fault_at():
    rate = 200.0  # minutes of machine time stay cheap at a low rate
    healthy = Machine(rate=rate, seed=4).generate(int(240 * rate))[:, 3]
    hot = Machine(rate=rate, seed=4, fault="overheat", fault_at=60.0).generate(int(240 * rate))[:, 3]
    before, after = slice(0, int(60 * rate)), slice(int(230 * rate), None)
    np.testing.assert_array_equal(hot[before], healthy[before])
    rise = hot[after].mean() - healthy[after].mean()
    assert 4.0 < rise < 10.0  # 3 min: 1.5 C/min accelerating by 0.5 C/min^2 -> ~9 C
    minute = int(60 * rate)
    slopes = np.diff([hot[i : i + 100].mean() for i in range(minute, 4 * minute, minute)] + [hot[-100:].mean()])
    assert np.all(np.diff(slopes) > 0)  # and it is getting worse


@pytest.mark.parametrize("fault", [None, *FAULTS])
def test_blocks_join_seamlessly_and_runs_repeat_with_the_seed(fault):
    whole = Machine(seed=7, fault=fault, fault_at=0.5).generate(6400)
    m = Machine(seed=7, fault=fault, fault_at=0.5)
    parts = np.vstack([m.generate(n) for n in (1, 63, 1000, 2137, 3199)])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(Machine(seed=7, fault=fault, fault_at=0.5).generate(6400), whole)
    assert not np.allclose(Machine(seed=8, fault=fault, fault_at=0.5).generate(6400), whole)


def test_fault_is_silent_before_fault_at():
    healthy = Machine(seed=2).generate(int(3 * RATE))
    faulty = Machine(seed=2, fault="outer-race", fault_at=2.0).generate(int(3 * RATE))
    cut = int(2 * RATE)
    np.testing.assert_array_equal(faulty[:cut], healthy[:cut])
    assert kurtosis(faulty[cut:, 0]) > kurtosis(healthy[cut:, 0])


def test_channel_subset_and_order():
    x = Machine(seed=1, channels=("temp", "az")).generate(100)
    assert x.shape == (100, 2)
    assert x[:, 0].mean() > 30 and x[:, 1].mean() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        Machine(channels=("ax", "rpm"))
    with pytest.raises(ValueError):
        Machine(fault="cavitation")


def test_format_lines_round_trips():
    block = Machine(seed=1).generate(50)
    text = format_lines(block)
    rows = np.array([[float(v) for v in line.split(b",")] for line in text.splitlines()])
    assert text.endswith(b"\n") and text.count(b"\n") == 50
    np.testing.assert_allclose(rows, block, atol=1e-3)
    assert format_lines(block[:0]) == b""


def test_serve_streams_lines_through_a_real_pty(tmp_path):
    link = str(tmp_path / "machine")
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", serve(link, rate=RATE, stop=stop)))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not os.path.lexists(link) and time.monotonic() < deadline:
            time.sleep(0.01)
        with serial.Serial(link, timeout=0.05) as port:
            data, t0 = bytearray(), time.monotonic()
            while time.monotonic() - t0 < 1.5:
                data += port.read(65536)
            elapsed = time.monotonic() - t0
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive() and result["rc"] == 0
    assert not os.path.lexists(link)
    lines = bytes(data).split(b"\n")[1:-1]  # the first and last may be cut mid-line
    rows = np.array([[float(v) for v in line.split(b",")] for line in lines])
    assert rows.shape[1] == 4
    assert 0.7 * RATE < len(rows) / elapsed < 1.3 * RATE
    assert rows[:, 2].mean() == pytest.approx(1.0, abs=0.05)


def test_serve_drops_unread_data_without_blocking_and_honours_duration(tmp_path):
    link = str(tmp_path / "machine")
    t0 = time.monotonic()
    assert serve(link, rate=20000.0, duration=1.0) == 0  # ~700 kB/s with nobody reading
    assert 0.9 < time.monotonic() - t0 < 3.0
    assert not os.path.lexists(link)


def test_serve_refuses_unimplemented_protocols(tmp_path):
    assert serve(str(tmp_path / "m"), protocol="canbus", duration=0.1) == 2  # lines, frames, modbus exist
    assert not os.path.lexists(tmp_path / "m")
