"""One contract over every registered protocol (drivers/base.Source), river's check-suite idea for
drivers: each protocol, fed by its simulator on a real pty (or in-process), must keep the same
promises. A new protocol is one driver file plus one case in CASES (the `loopback` case shows it). A protocol's
pty server (what `pdm-agent simulate` plays) is part of the contract: its options parse, it feeds
the protocol's own source, and it stops with exit code 0 when asked."""

from __future__ import annotations

import argparse
import ast
import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from loopback_driver import PROTOCOL as LOOPBACK, install as install_loopback

from agent.config import parse_config
from drivers.base import (BUILTIN, REGISTRY, VALUES, WAVEFORM, FeatureVector, Frame, driver_for, open_source,
                          pty_servers)

install_loopback()  # registered from the tests: the shipped package does not know it


def _wait_for(path, timeout=5.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not created"
        time.sleep(0.02)


def _served(protocol, sim_args=(), keys=""):
    """A case played by the protocol's own pty server (drivers/base.PtyServer), started with its
    `simulate` options as argparse parses `sim_args`; the server's exit code is kept in `done`."""
    def start(tmp_path, stop, done):
        server = driver_for(protocol).pty_server
        parser = argparse.ArgumentParser()
        names = server.add_arguments(parser)
        parsed = parser.parse_args(list(sim_args))
        assert set(names) == set(vars(parsed)), "add_arguments must return the names of the options it adds"
        link = tmp_path / "tty"
        threading.Thread(target=lambda: done.append(server.serve(str(link), rate=1000.0, stop=stop, **vars(parsed))),
                         daemon=True).start()
        _wait_for(link)
        return parse_config(f"device: {{id: g}}\nsensors: [{{name: s, port: {link}, protocol: {protocol}{keys}}}]"
                            ).sensors[0]
    return start


def _sim(tmp_path, stop, done):
    return parse_config("device: {id: g}\nsensors: [{name: s, protocol: sim}]").sensors[0]


def _loopback(tmp_path, stop, done):
    return SimpleNamespace(name="s", channels=["count", "half"], protocol=LOOPBACK)


CASES = {
    "lines": _served("lines"),
    "frames": _served("frames"),
    "modbus": _served("modbus", ["--preset", "qm30vt2", "--baudrate", "115200"],
                      ", preset: qm30vt2, baudrate: 115200, timeout: 0.3, retries: 0, poll_interval: 0.05"),
    "sim": _sim,
    LOOPBACK: _loopback,
}
# Protocols with no simulated device on a pty, said explicitly: `sim` runs in-process, `loopback`
# echoes through pyserial's loop://. Every other protocol must bring a pty server.
NO_PTY_SERVER = {"sim", LOOPBACK}


def test_every_protocol_has_a_case():
    assert set(CASES) == set(BUILTIN) | set(REGISTRY)


def test_every_protocol_module_is_listed_in_builtin():
    """A driver module that registers a protocol but is missing from BUILTIN would be refused by
    the configuration (`sensors[].protocol` offers BUILTIN only) and skipped by this contract."""
    drivers = Path(driver_for.__code__.co_filename).parent
    registering = {path.stem for path in drivers.glob("*.py")
                   if any(isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "register"
                          for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))}
    assert registering and {f"drivers.{m}" for m in registering} == set(BUILTIN.values())


def test_simulate_offers_every_pty_server():
    assert set(pty_servers()) == set(CASES) - NO_PTY_SERVER


@pytest.mark.parametrize("protocol", sorted(CASES))
def test_source_contract(protocol, tmp_path):
    stop, done = threading.Event(), []
    driver = driver_for(protocol)
    assert (driver.pty_server is None) == (protocol in NO_PTY_SERVER)
    cfg = CASES[protocol](tmp_path, stop, done)
    assert driver.protocol == protocol and driver.kind in (WAVEFORM, VALUES)
    cadence = driver.cadence_s(cfg)
    assert (cadence is None) == (driver.kind == WAVEFORM) and (cadence is None or cadence > 0)
    assert isinstance(driver.value_ranges(cfg), dict)
    source = open_source(cfg)
    try:
        assert source.kind == driver.kind and source.sensor == "s"
        item, deadline = None, time.monotonic() + 10
        while item is None and time.monotonic() < deadline:
            t0 = time.monotonic()
            item = source.read()
            assert time.monotonic() - t0 < 2.0, "read() must return within about a second"
        assert item is not None, "no data from the simulator within 10 s"
        assert abs(time.time() - (item.t_end if isinstance(item, Frame) else item.ts)) < 60
        if driver.kind == WAVEFORM:
            assert isinstance(item, Frame) and item.channels == tuple(cfg.channels)
            assert item.samples.ndim == 2 and item.samples.shape[1] == len(cfg.channels)
            assert np.isfinite(item.samples).all()
        else:
            assert isinstance(item, FeatureVector) and item.values
            assert all(math.isfinite(v) for v in item.values.values())
        assert source.online is True
        for counts in (source.counters(), source.input_errors()):
            assert isinstance(counts, dict)
        assert all(isinstance(v, int) for v in source.input_errors().values())
    finally:
        stop.set()
        source.close()
    source.close()  # twice is allowed
    if driver.pty_server is not None:  # the server stops when asked, with exit code 0, and removes its link
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done == [0] and not (tmp_path / "tty").exists()


def test_an_unknown_protocol_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown protocol 'opcua' \(available: .*lines.*sim"):
        driver_for("opcua")
