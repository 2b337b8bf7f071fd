"""`protocol: modbus`: poll a Modbus RTU (or TCP) transmitter; each poll is one FeatureVector.

Industrial vibration transmitters compute their own RMS velocity, kurtosis, temperature...: the
values are features already, so a poll skips windowing and enters the pipeline at `handle()`.
pymodbus is imported here only, and only when a modbus sensor is configured.

Registers are read in as few requests as possible (`plan_reads` merges neighbours), decoded by
type, scaled, and named after the waveform features. Timeouts, replies that arrive garbled (CRC
or framing errors), Modbus exception replies and retries are counted for the status topic.

A unit that answers a request with an exception reply is there: only some register is wrong
(a map for another firmware, a typo in `registers:`). The registers of that request are then
read one by one; those the unit refuses are named once in the log with the exception and left
out of the feature vector and of later polls (`bad_registers` in the status); the others are kept.
(Left out rather than NaN: a NaN would read as a broken sensor in the health checks.)
"""

from __future__ import annotations

import logging
import time

from drivers.base import VALUES, Driver, FeatureVector, PtyServer, register
from drivers.modbus_codec import PYMODBUS_IMPORT, Read, decode, encode, plan_reads  # noqa: F401 (encode: re-exported)
from drivers.modbus_config import ModbusSettings
from drivers.presets import Register

EXCEPTIONS = {  # Modbus Application Protocol v1.1b3, section 7
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
    5: "acknowledge", 6: "server device busy", 8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusSource:
    """Polls one slave every `poll_interval` seconds (the Source contract of drivers/base.py, kind
    VALUES: `read()` returns a FeatureVector, since scalar values need no windowing).

    `port` is a serial device or pyserial URL for RTU, or ``tcp://host:port`` for Modbus TCP.
    `read()` returns None until the next poll is due, sleeping at most `max_wait` seconds, so the
    worker stays responsive to stop and reload requests whatever the poll interval.
    """

    kind = VALUES

    def __init__(
        self, sensor: str, port: str, *, registers: tuple[Register, ...], slave_id: int = 1,
        baudrate: int = 19200, parity: str = "N", poll_interval: float = 1.0, timeout: float = 1.0,
        retries: int = 2, word_order: str = "big", max_wait: float = 0.2, log=None,
    ) -> None:
        self.sensor = sensor
        self.channels = tuple(dict.fromkeys(r.name.split(".")[0] for r in registers))
        self.registers = tuple(registers)
        self.reads = plan_reads(self.registers)
        self.slave_id = slave_id
        self.poll_interval = poll_interval
        self.word_order = word_order
        self.max_wait = max_wait
        self.log = log
        self.port = port
        self._client = _make_client(port, baudrate, parity, timeout, retries, self._trace)
        self._next_poll = time.monotonic()
        self._online = False
        self._ever_online = False
        self._rx_seen = False
        self.counts = {"polls": 0, "polls_ok": 0, "timeouts": 0, "crc_errors": 0, "exceptions": 0,
                       "retries": 0}
        self.last_error: str | None = None
        self.last_poll_ms: float | None = None
        self.bad_registers: dict[str, str] = {}  # name -> the exception the unit answers for it
        self._exception: int | None = None  # code of the last exception reply, None otherwise

    @property
    def online(self) -> bool:
        return self._online

    def read(self) -> FeatureVector | None:
        wait = self._next_poll - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, self.max_wait))
            if time.monotonic() < self._next_poll:
                return None
        # Schedule from the plan, not from now, so polls do not drift by their own duration.
        self._next_poll = max(self._next_poll + self.poll_interval, time.monotonic())
        return self.poll()

    def poll(self) -> FeatureVector | None:
        """One complete read of every register; None (and counted) when any request fails."""
        self.counts["polls"] += 1
        t0 = time.perf_counter()
        values: dict[str, float] = {}
        for read in list(self.reads):
            words = self._request(read)
            if words is None and self._exception is not None:
                if not self._isolate(read, values):
                    self._set_online(False)
                    return None
                continue
            if words is None:
                self._set_online(False)
                return None
            for reg in read.registers:
                i = reg.address - read.address
                values[reg.name] = decode(reg, words[i:i + reg.count], self.word_order)
        self.last_poll_ms = (time.perf_counter() - t0) * 1000
        self.counts["polls_ok"] += 1
        self._set_online(True)
        # Feature order follows the register map, so aggregates and models see a stable layout.
        return FeatureVector(self.sensor, time.time(), {r.name: values[r.name] for r in self.registers
                                                         if r.name in values})

    def _request(self, read: Read) -> list[int] | None:
        with PYMODBUS_IMPORT:
            from pymodbus.exceptions import ModbusException

        fn = self._client.read_holding_registers if read.table == "holding" \
            else self._client.read_input_registers
        self._rx_seen = False
        self._exception = None
        try:
            response = fn(read.address, count=read.count, device_id=self.slave_id)
        except ModbusException as exc:
            # Bytes came back but never made a valid reply: CRC or framing damage on the line.
            self.counts["crc_errors" if self._rx_seen else "timeouts"] += 1
            self.last_error = str(exc)
            return None
        except OSError as exc:  # the port vanished under pymodbus
            self.counts["timeouts"] += 1
            self.last_error = str(exc)
            self._client.close()
            return None
        self.counts["retries"] += getattr(response, "retries", 0) or 0
        if response.isError():
            self.counts["exceptions"] += 1
            self._exception = int(getattr(response, "exception_code", 0) or 0)
            self.last_error = (f"modbus exception {self._exception} ({EXCEPTIONS.get(self._exception, 'unknown')}) "
                               f"reading {read.table} registers {read.registers[0].number}.."
                               f"{read.registers[-1].number} from unit {self.slave_id}")
            return None
        return list(response.registers)

    def _isolate(self, read: Read, values: dict[str, float]) -> bool:
        """`read` got an exception reply: read its registers one by one, keep the good ones'
        values, name and drop the refused ones. False if the unit stopped answering meanwhile."""
        for reg in read.registers:
            words = self._request(Read(reg.table, reg.address, reg.count, (reg,)))
            if words is None and self._exception is None:
                return False  # a timeout, not a refusal: the poll failed
            if words is not None:
                values[reg.name] = decode(reg, words, self.word_order)
                continue
            why = f"exception {self._exception} ({EXCEPTIONS.get(self._exception, 'unknown')})"
            self.bad_registers[reg.name] = why
            if self.log:
                self.log.error("modbus unit refuses a register; it is left out, the others are read",
                               sensor=self.sensor, register=reg.number, name=reg.name, table=reg.table,
                               slave_id=self.slave_id, reply=why)
        self.reads = plan_reads([r for r in self.registers if r.name not in self.bad_registers])
        return True

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._rx_seen = True
        return data

    def _set_online(self, online: bool) -> None:
        if online == self._online:
            return
        self._online = online
        if self.log:
            if online:
                self.log.info("modbus slave answering", sensor=self.sensor, port=self.port,
                              slave_id=self.slave_id, recovered=self._ever_online)
            else:
                self.log.warning("modbus slave not answering", sensor=self.sensor, port=self.port,
                                 slave_id=self.slave_id, error=self.last_error)
        self._ever_online = self._ever_online or online

    def input_errors(self) -> dict:
        """Replies damaged on the line (the Source contract; timeouts are not input)."""
        return {"crc_errors": self.counts["crc_errors"]}

    def counters(self) -> dict:
        out = dict(self.counts)
        if self.last_poll_ms is not None:
            out["last_poll_ms"] = round(self.last_poll_ms, 2)
        if self.last_error and not self._online:
            out["last_error"] = self.last_error
        if self.bad_registers:
            out["bad_registers"] = dict(self.bad_registers)
        return out

    def close(self) -> None:
        self._client.close()


def _make_client(port: str, baudrate: int, parity: str, timeout: float, retries: int, trace):
    with PYMODBUS_IMPORT:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

    # pymodbus logs every failed request at ERROR; we count them and log state changes instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    if port.startswith("tcp://"):
        host, _, tcp_port = port[len("tcp://"):].rpartition(":")
        return ModbusTcpClient(host or "localhost", port=int(tcp_port or 502), timeout=timeout, retries=retries,
                               trace_packet=trace)
    return ModbusSerialClient(port, baudrate=baudrate, parity=parity, timeout=timeout, retries=retries,
                              trace_packet=trace)


def open_modbus(sensor_cfg, log=None) -> ModbusSource:
    """The ModbusSource a sensor's config asks for: its preset's map, plus/overridden by `registers:`."""
    from drivers.presets import get_preset

    registers: dict[str, Register] = {}
    if sensor_cfg.preset:
        registers = {r.name: r for r in get_preset(sensor_cfg.preset).registers}
    for spec in sensor_cfg.registers:
        registers[spec.name] = Register(spec.name, spec.number, spec.type, spec.scale, spec.unit,
                                        tuple(spec.range) if spec.range else None)
    return ModbusSource(
        sensor_cfg.name, sensor_cfg.port, registers=tuple(registers.values()), slave_id=sensor_cfg.slave_id,
        baudrate=sensor_cfg.baudrate, parity=sensor_cfg.parity, poll_interval=sensor_cfg.poll_interval,
        timeout=sensor_cfg.timeout, retries=sensor_cfg.retries, word_order=sensor_cfg.word_order, log=log,
    )


def _value_ranges(sensor_cfg) -> dict[str, tuple[float, float]]:
    """The physical range of each value, from the preset's map overridden by `registers:`."""
    from drivers.presets import get_preset

    regs = list(get_preset(sensor_cfg.preset).registers) if sensor_cfg.preset else []
    ranges = {r.name: r.range for r in regs if r.range}
    ranges.update({r.name: tuple(r.range) for r in sensor_cfg.registers if r.range})
    return ranges


def _value_names(sensor_cfg) -> list[str]:
    """The feature names a poll reports, in `open_modbus`'s order: the preset's registers, then
    those `registers:` adds (one that overrides a preset's register keeps its place)."""
    from drivers.presets import get_preset

    names = [r.name for r in get_preset(sensor_cfg.preset).registers] if sensor_cfg.preset else []
    return names + [n for n in dict.fromkeys(r.name for r in sensor_cfg.registers) if n not in names]


def _serve_pty(link: str, *, rate: float | None = None, rpm: float | None = None, preset: str = "qm30vt2",
               **kwargs) -> int:
    """The pty server of `simulate --protocol modbus` (drivers/base.PtyServer). A polled slave
    reports the machine's condition values, not its samples, so `rate` and `rpm` do not apply."""
    from drivers.modbus_slave import serve_modbus

    return serve_modbus(link, preset, **kwargs)


def _simulate_arguments(parser) -> tuple[str, ...]:
    """The options of `simulate --protocol modbus`; returns their argparse names."""
    from drivers.presets import PRESETS

    modbus = parser.add_argument_group("modbus slave (--protocol modbus; SIGUSR1 unplugs it, SIGUSR2 plugs it back)")
    modbus.add_argument("--preset", choices=sorted(PRESETS), default="qm30vt2", help="device to act as (default: qm30vt2)")
    modbus.add_argument("--slave-id", type=int, default=None, metavar="N", help="unit id (default: the preset's)")
    modbus.add_argument("--baudrate", type=int, default=None, metavar="BAUD",
                        help="emulated line speed (default: the preset's)")
    modbus.add_argument("--velocity", type=float, default=None, metavar="MM_S",
                        help="healthy RMS velocity to report, mm/s (default: the preset's example)")
    return ("preset", "slave_id", "baudrate", "velocity")


register(Driver("modbus", VALUES, open_modbus, settings=ModbusSettings, cadence_s=lambda cfg: cfg.poll_interval,
                value_ranges=_value_ranges, value_names=_value_names,
                baseline_key=lambda cfg: [f"preset={cfg.preset}", f"registers={cfg.registers!r}"],
                pty_server=PtyServer(_serve_pty, _simulate_arguments)))
