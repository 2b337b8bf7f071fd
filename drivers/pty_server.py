"""The simulated machine behind a real pseudo-terminal: the body of `pdm-agent simulate`.

The agent reads the slave side exactly as it reads a USB-serial adapter; a symlink at `--link`
points to the slave device. Generation is paced against the monotonic clock, so machine time is
wall-clock time since start (what `--fault-at` counts) and the stream never drifts. Like a real
sensor, data nobody reads is lost: when the pty buffer is full the block is dropped and counted.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import threading
import time

import numpy as np

from drivers.pty import install_signal_handlers, link_error, open_pty_link  # noqa: F401 (re-exported)
from drivers.simulator import CHANNELS, FAULTS, TEMPERATURE_CHANNELS, Machine

PROTOCOLS = ("lines", "frames", "modbus")
BLOCK_S = 0.02  # one write per 20 ms of samples: smooth for readers, cheap for us
MAX_BLOCK_S = 1.0  # after a stall (suspend, overload) catch up in blocks of at most this much


def format_lines(block: np.ndarray, channels: tuple[str, ...] = CHANNELS) -> bytes:
    """One ASCII line per sample, comma-separated columns in channel order, "\\n"-terminated.

    Acceleration gets 5 decimals (10 micro-g, finer than a 16-bit +-16 g ADC), temperature 3.
    The whole block is one `%` formatting call, done in C.

    >>> format_lines(np.array([[0.012345, -0.003, 0.998, 41.2]]))
    b'0.01235,-0.00300,0.99800,41.200\\n'
    """
    if block.size == 0:
        return b""
    row = ",".join("%.3f" if c in TEMPERATURE_CHANNELS else "%.5f" for c in channels[: block.shape[1]]) + "\n"
    return ((row * block.shape[0]) % tuple(block.ravel().tolist())).encode("ascii")


class _Writer:
    """Non-blocking writes that keep lines whole: a block is delivered entirely or dropped."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""
        self.dropped_blocks = 0
        self.written_bytes = 0

    def write(self, data: bytes) -> None:
        self._flush()
        if self.pending:  # still stuck on the previous block: nobody reads, lose this one
            self.dropped_blocks += 1
            return
        self.pending = data
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                n = os.write(self.fd, self.pending)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EIO):  # full, or no reader on some kernels
                    return
                raise
            self.written_bytes += n
            self.pending = self.pending[n:]


def _discard_input(fd: int) -> None:
    """Read and ignore what a reader writes to the port, so the master's input never fills."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def serve(
    link: str,
    protocol: str = "lines",
    rate: float = 3200.0,
    fault: str | None = None,
    fault_at: float = 0.0,
    seed: int = 0,
    duration: float | None = None,
    rpm: float = 1780.0,
    stop: threading.Event | None = None,
    modbus: dict | None = None,
) -> int:
    """Stream the simulated machine to a pty at `link` until SIGTERM/SIGINT, `stop` or `duration`.

    Returns the exit code: 0 when stopped, 1 when the link cannot be made, 2 for invalid usage
    (unknown protocol or fault).
    """
    if protocol == "modbus":  # a polled slave, not a stream: its own server (drivers/modbus_slave.py)
        from drivers.modbus_slave import serve_modbus

        return serve_modbus(link, fault=fault, fault_at=fault_at, seed=seed, duration=duration, stop=stop,
                            **(modbus or {}))
    if protocol not in PROTOCOLS:
        print(f"simulate: unknown protocol {protocol!r} (available: {', '.join(PROTOCOLS)})", file=sys.stderr)
        return 2
    try:
        machine = Machine(rate=rate, rpm=rpm, seed=seed, fault=fault, fault_at=fault_at)
    except ValueError as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
    try:
        master, slave, device = open_pty_link(link)
    except OSError as e:
        return link_error(link, e)
    stop = stop or threading.Event()
    restore = install_signal_handlers(stop)
    try:
        os.set_blocking(master, False)
        writer = _Writer(master)
        what = "healthy" if fault is None else f"fault {fault} at {fault_at:g} s"
        print(
            f"simulate: {link} -> {device}, protocol {protocol}, {rate:g} Hz, {rpm:g} rpm, "
            f"channels {','.join(machine.channels)}, {what}, seed {seed}",
            file=sys.stderr,
            flush=True,
        )
        block_n = max(1, round(rate * BLOCK_S))
        if protocol == "frames":
            from drivers.frames import stream_encoder

            encode = stream_encoder(machine.channels, per_frame=block_n)
        else:
            encode = format_lines
        max_n = max(block_n, round(rate * MAX_BLOCK_S))
        produced = 0
        t0 = time.monotonic()
        end = None if duration is None else round(rate * duration)
        while not stop.is_set():
            due = int(rate * (time.monotonic() - t0))
            if end is not None:
                due = min(due, end)
            while produced < due:
                n = min(due - produced, max_n)
                writer.write(encode(machine.generate(n), machine.channels))
                produced += n
            _discard_input(master)
            if end is not None and produced >= end:
                break
            stop.wait(max(0.0, t0 + (produced + block_n) / rate - time.monotonic()))
        print(
            f"simulate: stopped after {produced / rate:.1f} s, {produced} samples, "
            f"{writer.dropped_blocks} blocks dropped (unread)",
            file=sys.stderr,
            flush=True,
        )
    finally:
        restore()
        if os.path.islink(link) and os.readlink(link) == device:
            os.unlink(link)
        os.close(master)
        os.close(slave)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pdm-agent simulate`."""
    parser.add_argument("--link", required=True, metavar="PATH", help="symlink to create, pointing to the pty device")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="lines", help="wire protocol (default: lines)")
    parser.add_argument("--rate", type=float, default=3200.0, metavar="HZ", help="samples per second (default: 3200)")
    parser.add_argument("--fault", choices=FAULTS, default=None, help="seed this fault (default: healthy)")
    parser.add_argument(
        "--fault-at", type=float, default=0.0, metavar="SECONDS",
        help="when the fault appears, in seconds from the simulator's start (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long (default: run until stopped)"
    )
    parser.add_argument("--rpm", type=float, default=1780.0, metavar="RPM", help="shaft speed (default: 1780)")
    from drivers.presets import PRESETS

    modbus = parser.add_argument_group("modbus slave (--protocol modbus; SIGUSR1 unplugs it, SIGUSR2 plugs it back)")
    modbus.add_argument("--preset", choices=sorted(PRESETS), default="qm30vt2", help="device to act as (default: qm30vt2)")
    modbus.add_argument("--slave-id", type=int, default=None, metavar="N", help="unit id (default: the preset's)")
    modbus.add_argument("--baudrate", type=int, default=None, metavar="BAUD",
                        help="emulated line speed (default: the preset's)")
    modbus.add_argument("--velocity", type=float, default=None, metavar="MM_S",
                        help="healthy RMS velocity to report, mm/s (default: the preset's example)")


def main(args: argparse.Namespace) -> int:
    """Run `pdm-agent simulate` with parsed arguments; returns the exit code."""
    if args.rate <= 0 or args.rpm <= 0 or (args.duration is not None and args.duration < 0):
        print("simulate: --rate, --rpm and --duration must be positive", file=sys.stderr)
        return 2
    return serve(
        args.link,
        protocol=args.protocol,
        rate=args.rate,
        fault=args.fault,
        fault_at=args.fault_at,
        seed=args.seed,
        duration=args.duration,
        rpm=args.rpm,
        modbus={"preset": args.preset, "slave_id": args.slave_id, "baudrate": args.baudrate,
                "velocity": args.velocity},
    )
