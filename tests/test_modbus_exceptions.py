"""Say why, Modbus: an exception reply names the register and the exception, and one register the
unit refuses does not discard the good ones read in the same request. A real pymodbus slave on a
pty (`serve_modbus`) whose register block ends where the preset's map ends; the config adds one
register just past it, close enough to be merged into the same read request.
"""

from __future__ import annotations

import math
import threading
import time

from agent.config import parse_config
from drivers.modbus import ModbusSource, open_modbus, plan_reads
from drivers.modbus_slave import serve_modbus
from drivers.presets import PRESETS


class _Log:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def __getattr__(self, level):
        return lambda event, **kw: self.events.append({"level": level, "event": event, **kw})


def test_a_refused_register_is_named_and_the_others_are_kept(tmp_path):
    link = str(tmp_path / "ttyMB")
    stop = threading.Event()
    server = threading.Thread(target=serve_modbus, args=(link, "qm30vt2"),
                              kwargs={"velocity": 3.0, "baudrate": 115200, "stop": stop}, daemon=True)
    server.start()
    last = max(r.number for r in PRESETS["qm30vt2"].registers)
    extra = last + 2  # not served by the slave; within MAX_HOLE, so merged into the same request
    cfg = parse_config(f"device: {{id: g}}\nsensors: [{{name: p, port: {link}, protocol: modbus, preset: qm30vt2,"
                       f" baudrate: 115200, timeout: 0.3, retries: 0, poll_interval: 0.05,"
                       f" registers: [{{name: x.extra, number: {extra}}}]}}]").sensors[0]
    deadline = time.monotonic() + 10
    while not (tmp_path / "ttyMB").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    log = _Log()
    source: ModbusSource = open_modbus(cfg, log=log)
    assert len(plan_reads(source.registers)) == 1  # one request holds the good and the bad register
    try:
        vectors = []
        while len(vectors) < 3 and time.monotonic() < deadline:
            v = source.read()
            if v is not None:
                vectors.append(v)
        assert len(vectors) == 3 and source.online
        for v in vectors:
            assert "x.extra" not in v.values
            assert list(v.values) == [r.name for r in PRESETS["qm30vt2"].registers]  # the good ones, kept
            assert abs(v.values["z.velocity_rms_mm_s"] - 3.0) < 0.15
            assert all(math.isfinite(x) for x in v.values.values())
        (err,) = [e for e in log.events if e["level"] == "error"]  # named once, not every poll
        assert err["register"] == extra and err["name"] == "x.extra"
        assert err["reply"] == "exception 2 (illegal data address)"
        assert source.counters()["bad_registers"] == {"x.extra": "exception 2 (illegal data address)"}
        assert source.counters()["exceptions"] >= 1
    finally:
        stop.set()
        source.close()
        server.join(5)
