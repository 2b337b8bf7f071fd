"""The simulated machine as a Modbus RTU slave on a pty: `pdm-agent simulate --protocol modbus`.

A pymodbus server answers for the chosen preset (qm30vt2 or wtvb01) with values that follow the
machine's state: healthy values from the preset with ~2 % noise, scaled by `--velocity`, and the
signature of a seeded fault (imbalance triples the velocities, a bearing fault raises kurtosis,
crest factor and high-frequency acceleration, overheat adds 30 degC).

pymodbus opens its port by path, and so does the agent, but a pty has only one path (its slave
side). So there are two ptys and a relay thread between their masters; the relay also
- holds every chunk for the time it would take on the wire at `baudrate` (10 bits per byte), so
  poll timings are those of a real RS-485 line, not of an instant pty;
- drops everything while the slave is "unplugged": SIGUSR1 unplugs, SIGUSR2 plugs back in
  (idempotent, so a test may repeat a signal), to show an agent's
  offline detection and recovery (`kill -USR1 <pid>`).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sys
import threading
import time

import numpy as np

from drivers.modbus_codec import PYMODBUS_IMPORT, encode, plan_reads
from drivers.presets import Preset, get_preset
from drivers.pty import install_signal_handlers, link_error, open_pty_link

NOISE = 0.02
_SCALED_BY_VELOCITY = ("velocity_rms_mm_s", "velocity_peak_mm_s", "displacement_um")


class SimulatedTransmitter:
    """Physical values of the preset's registers at machine time t (seconds since start).

    >>> from drivers.presets import QM30VT2
    >>> tx = SimulatedTransmitter(QM30VT2, velocity=3.5, noise=0.0)
    >>> v = tx.values(0.0)
    >>> v["z.velocity_rms_mm_s"], v["temp.mean_c"]
    (3.5, 35.0)
    >>> SimulatedTransmitter(QM30VT2, fault="imbalance", noise=0.0).values(10.0)["z.velocity_rms_mm_s"]
    3.6
    """

    def __init__(self, preset: Preset, *, velocity: float | None = None, fault: str | None = None,
                 fault_at: float = 0.0, seed: int = 0, noise: float = NOISE) -> None:
        self.preset = preset
        z = [r.sim for r in preset.registers if r.name.endswith("velocity_rms_mm_s")]
        self.factor = velocity / z[0] if velocity is not None and z and z[0] else 1.0
        self.fault = fault
        self.fault_at = fault_at
        self.noise = noise
        self._rng = np.random.default_rng(seed)

    def values(self, t: float) -> dict[str, float]:
        faulty = self.fault is not None and t >= self.fault_at
        out = {}
        for reg in self.preset.registers:
            v = reg.sim
            feature = reg.name.split(".", 1)[1]
            if feature in _SCALED_BY_VELOCITY:
                v *= self.factor * (3.0 if faulty and self.fault == "imbalance" else 1.0)
            if faulty and self.fault in ("outer-race", "inner-race"):
                if feature in ("kurtosis", "crest_factor"):
                    v *= 2.5
                elif feature.startswith("hf_rms"):
                    v *= 4.0
            if faulty and self.fault == "overheat" and reg.name.startswith("temp"):
                v += 30.0
            if self.noise:
                v *= 1.0 + self.noise * float(self._rng.standard_normal())
            out[reg.name] = round(v, 6)
        return out


def serve_modbus(
    link: str, preset: str = "qm30vt2", *, slave_id: int | None = None, baudrate: int | None = None,
    velocity: float | None = None, fault: str | None = None, fault_at: float = 0.0, seed: int = 0,
    duration: float | None = None, stop: threading.Event | None = None,
) -> int:
    """Answer Modbus RTU requests on a pty at `link` until SIGTERM/SIGINT, `stop` or `duration`."""
    try:
        spec = get_preset(preset)
    except ValueError as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
    slave_id = spec.slave_id if slave_id is None else slave_id
    baudrate = spec.baudrate if baudrate is None else baudrate
    tx = SimulatedTransmitter(spec, velocity=velocity, fault=fault, fault_at=fault_at, seed=seed)
    try:
        outer = open_pty_link(link)
    except OSError as e:
        return link_error(link, e)
    inner_master, inner_slave = os.openpty()
    import tty

    tty.setraw(inner_slave)
    inner_device = os.ttyname(inner_slave)
    stop = stop or threading.Event()
    relay = _Relay(outer[0], inner_master, baudrate, stop)
    restore = install_signal_handlers(stop)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda *_: relay.plug(False))
        signal.signal(signal.SIGUSR2, lambda *_: relay.plug(True))
    relay_thread = threading.Thread(target=relay.run, name="modbus-relay", daemon=True)
    relay_thread.start()
    print(
        f"simulate: {link} -> {outer[2]}, protocol modbus, preset {spec.name} ({spec.title}), "
        f"slave id {slave_id}, {baudrate} baud (emulated), "
        f"{'healthy' if fault is None else f'fault {fault} at {fault_at:g} s'}; SIGUSR1 unplugs, SIGUSR2 replugs",
        file=sys.stderr, flush=True,
    )
    try:
        asyncio.run(_serve(tx, spec, slave_id, inner_device, baudrate, stop, duration))
    finally:
        stop.set()
        relay_thread.join(2)
        restore()
        if os.path.islink(link) and os.readlink(link) == outer[2]:
            os.unlink(link)
        for fd in (outer[0], outer[1], inner_master, inner_slave):
            os.close(fd)
    print(f"simulate: stopped; {relay.requests} requests relayed, {relay.dropped} dropped while unplugged",
          file=sys.stderr, flush=True)
    return 0


async def _serve(tx: SimulatedTransmitter, spec: Preset, slave_id: int, port: str, baudrate: int,
                 stop: threading.Event, duration: float | None) -> None:
    import logging

    with PYMODBUS_IMPORT:  # the test suite runs a slave and a client in one process
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its deprecation chatter is not ours
    t0 = time.monotonic()
    by_address = {r.address: r for r in spec.registers}
    reads = plan_reads(spec.registers)
    start = min(r.address for r in reads)
    end = max(r.address + r.count for r in reads)

    async def refresh(_fc, block_start, _address, _count, registers, _set_values):
        # Every request sees the machine as it is now, like a transmitter's live registers.
        values = tx.values(time.monotonic() - t0)
        for address, reg in by_address.items():
            i = address - block_start
            registers[i:i + reg.count] = encode(reg, values[reg.name])
        return None

    device = SimDevice(
        id=slave_id, simdata=[SimData(start, count=end - start, values=0, datatype=DataType.REGISTERS)],
        action=refresh,
    )
    server = ModbusSerialServer(device, port=port, baudrate=baudrate, ignore_missing_devices=True)
    task = asyncio.create_task(server.serve_forever())
    deadline = None if duration is None else t0 + duration
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        await asyncio.sleep(0.05)
    await server.shutdown()
    task.cancel()


class _Relay:
    """Copies bytes between the agent's pty and the server's pty at wire speed; can 'unplug'."""

    def __init__(self, outer: int, inner: int, baudrate: int, stop: threading.Event) -> None:
        self.outer, self.inner = outer, inner
        self.byte_s = 10.0 / baudrate  # start + 8 data + stop bits
        self.stop = stop
        self.unplugged = False
        self.requests = 0
        self.dropped = 0

    def plug(self, plugged: bool) -> None:
        if self.unplugged != plugged:
            return
        self.unplugged = not plugged
        print(f"simulate: slave {'plugged in again' if plugged else 'unplugged (silent)'}",
              file=sys.stderr, flush=True)

    def run(self) -> None:
        peers = {self.outer: self.inner, self.inner: self.outer}
        while not self.stop.is_set():
            try:
                ready, _, _ = select.select(list(peers), [], [], 0.1)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if fd == self.outer:
                        self.requests += 1
                    if self.unplugged:
                        self.dropped += fd == self.outer
                        continue
                    time.sleep(len(data) * self.byte_s)
                    os.write(peers[fd], data)
            except OSError:
                if self.stop.wait(0.1):
                    return
