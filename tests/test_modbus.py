"""Modbus: register maps, decoding, and a real pymodbus RTU slave on a pty for each preset."""

from __future__ import annotations

import threading
import time

import pytest

from agent.config import ConfigError, parse_config
from drivers.modbus import ModbusSource, decode, encode, open_modbus, plan_reads
from drivers.modbus_slave import serve_modbus
from drivers.presets import PRESETS, Register, modicon


def test_modicon_numbers():
    assert modicon(45201) == ("holding", 5200)
    assert modicon(400001) == ("holding", 0)
    assert modicon(30010) == ("input", 9)
    with pytest.raises(ValueError, match="not a Modicon"):
        modicon(5201)


@pytest.mark.parametrize("kind", ["uint16", "int16", "uint32", "int32", "float32"])
@pytest.mark.parametrize("order", ["big", "little"])
def test_encode_decode_round_trip(kind, order):
    reg = Register("x.v", 40001, kind, scale=0.01)
    for value in (0.0, 12.34, 300.0) + ((-5.5,) if kind.startswith(("int", "float")) else ()):
        assert decode(reg, encode(reg, value, order), order) == pytest.approx(value, abs=1e-4)


def test_reads_are_merged_but_split_by_table_and_distance():
    regs = [Register("a.x", 40001), Register("a.y", 40003, "float32"), Register("a.z", 40100), Register("b.x", 30001)]
    assert [(r.table, r.address, r.count) for r in plan_reads(regs)] == [
        ("holding", 0, 4), ("holding", 99, 1), ("input", 0, 1)]


def test_config_preset_defaults_and_did_you_mean():
    cfg = parse_config("device: {id: g}\nsensors: [{name: p, port: /dev/x, protocol: modbus, preset: qm30vt2}]")
    assert (cfg.sensors[0].baudrate, cfg.sensors[0].slave_id) == (19200, 1)
    with pytest.raises(ConfigError) as info:
        parse_config("device: {id: g}\nsensors: [{name: p, port: /dev/x, protocol: modbus, preset: wtvb1}]", "c.yaml")
    assert info.value.errors == [
        "sensors[0].preset: unknown preset 'wtvb1'; did you mean 'wtvb01'? (known: qm30vt2, wtvb01) (c.yaml:2)"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_poll_a_pymodbus_slave_on_a_pty(preset, tmp_path):
    link = str(tmp_path / "ttyMB")
    stop = threading.Event()
    server = threading.Thread(target=serve_modbus, args=(link, preset),
                              kwargs={"velocity": 3.0, "baudrate": 115200, "stop": stop}, daemon=True)
    server.start()
    cfg = parse_config(f"device: {{id: g}}\nsensors: [{{name: p, port: {link}, protocol: modbus, preset: {preset},"
                       " baudrate: 115200, timeout: 0.3, retries: 0, poll_interval: 0.05}]").sensors[0]
    deadline = time.monotonic() + 5
    while not (tmp_path / "ttyMB").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    source: ModbusSource = open_modbus(cfg)
    try:
        vector = None
        while vector is None and time.monotonic() < deadline:
            vector = source.read()
        assert vector is not None and source.online
        spec = PRESETS[preset]
        assert list(vector.values) == [r.name for r in spec.registers]
        assert vector.values["z.velocity_rms_mm_s"] == pytest.approx(3.0, abs=0.15 if preset == "qm30vt2" else 0.5)
        temp = next(r.sim for r in spec.registers if r.name == "temp.mean_c")
        assert vector.values["temp.mean_c"] == pytest.approx(temp, rel=0.1)

        stop.set()  # the slave goes away: polls time out, the source says offline
        server.join(5)
        source.read()
        assert source.poll() is None and not source.online
        assert source.counters()["timeouts"] >= 1
    finally:
        stop.set()
        source.close()
