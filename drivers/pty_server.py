"""The simulated machine behind a real pseudo-terminal: the body of `pdm-agent simulate`.

The agent reads the slave side exactly as it reads a USB-serial adapter; a symlink at `--link`
points to the slave device. Generation is paced against the monotonic clock, so machine time is
wall-clock time since start (what `--fault-at` counts) and the stream never drifts. Like a real
sensor, data nobody reads is lost: when the pty buffer is full, blocks are dropped and counted, and
only the line or frame already begun is finished (see _Writer): what a reader gets after opening
the port is never a whole line or frame from before it opened.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import sys
import threading
import time
from typing import Callable

import numpy as np

from drivers.base import pty_servers
from drivers.pty import install_signal_handlers, link_error, open_pty_link  # noqa: F401 (re-exported)
from drivers.simulator import CHANNELS, FAULTS, TEMPERATURE_CHANNELS, Machine

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
    """Non-blocking writes of records (lines, frames) that keep each record whole: a record is
    delivered entirely or not at all.

    `write(records)` sends one block, a list of records. When the pty is full (nobody reads, or
    too slowly) the rest of the block waits; if it still waits when the next block comes, the
    reader is not keeping up: the new block is dropped, and so is every waiting record that has
    not begun. Only the record whose first bytes are already in the pty is finished, because its
    start cannot be taken back. So after a stall the reader never gets stale whole records: a
    sender that kept them would deliver them after the reader opens the port (which empties the
    pty), ahead of the live stream, and a frames reader would count every frame dropped while
    nobody read as lost by the agent (a sequence gap at the start). `dropped_blocks` counts blocks
    of which anything was dropped.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""
        self._ends: list[int] = []  # where each waiting record ends in `pending`
        self._head = 0  # where the first waiting record starts in `pending`: < 0 once it has begun
        self.dropped_blocks = 0
        self.written_bytes = 0

    def write(self, records: list[bytes]) -> None:
        self._flush()
        if self.pending:  # still stuck on the previous block: nobody reads, lose this one
            self.dropped_blocks += 1
            keep = 1 if self._head < 0 else 0  # the record begun, if any
            if len(self._ends) > keep:
                self._ends = self._ends[:keep]
                self.pending = self.pending[: self._ends[0]] if keep else b""
                self.dropped_blocks += 1  # the waiting block lost records too
            return
        self.pending = b"".join(records)
        self._ends = list(itertools.accumulate(len(r) for r in records if r))
        self._head = 0
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
            done = sum(1 for e in self._ends if e <= n)
            self._head = (self._ends[done - 1] if done else self._head) - n
            self._ends = [e - n for e in self._ends[done:]]


def _discard_input(fd: int) -> None:
    """Read and ignore what a reader writes to the port, so the master's input never fills."""
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def serve(link: str, protocol: str = "lines", **kwargs) -> int:
    """Play the simulated device of `protocol` on a pty at `link`, through the protocol's registered
    pty server (drivers/base.PtyServer: the keywords, the protocol's own `options` and the exit
    codes are described there). An unknown protocol, or one without a pty server, is exit code 2.
    """
    servers = pty_servers()
    if protocol not in servers:
        print(f"simulate: unknown protocol {protocol!r} (available: {', '.join(servers)})", file=sys.stderr)
        return 2
    return servers[protocol].serve(link, **kwargs)


def stream(
    link: str,
    protocol: str,
    encoder: Callable[[tuple[str, ...], int], Callable[[np.ndarray, tuple[str, ...]], list[bytes]]],
    *,
    rate: float = 3200.0,
    fault: str | None = None,
    fault_at: float = 0.0,
    seed: int = 0,
    duration: float | None = None,
    rpm: float = 1780.0,
    stop: threading.Event | None = None,
) -> int:
    """Stream the simulated machine's samples to a pty at `link` until SIGTERM/SIGINT, `stop` or
    `duration`: the pty server of the waveform protocols (lines, frames). `encoder(channels,
    block_n)` returns the protocol's `block (n, C) -> records` (the lines or frames, as a list of
    bytes, each kept whole on the wire: see _Writer) for blocks of about `block_n` samples.

    Returns the exit code: 0 when stopped, 1 when the link cannot be made, 2 for invalid usage
    (unknown fault).
    """
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
        encode = encoder(machine.channels, block_n)
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
    """The options of `pdm-agent simulate`: the common ones, then each protocol's own."""
    servers = pty_servers()
    parser.add_argument("--link", required=True, metavar="PATH", help="symlink to create, pointing to the pty device")
    parser.add_argument("--protocol", choices=list(servers), default="lines", help="wire protocol (default: lines)")
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
    own = {protocol: server.add_arguments(parser) for protocol, server in servers.items()}
    parser.set_defaults(protocol_options=own)


def main(args: argparse.Namespace) -> int:
    """Run `pdm-agent simulate` with parsed arguments; returns the exit code."""
    if args.rate <= 0 or args.rpm <= 0 or (args.duration is not None and args.duration < 0):
        print("simulate: --rate, --rpm and --duration must be positive", file=sys.stderr)
        return 2
    options = {name: getattr(args, name) for name in args.protocol_options.get(args.protocol, ())}
    return serve(
        args.link,
        protocol=args.protocol,
        rate=args.rate,
        fault=args.fault,
        fault_at=args.fault_at,
        seed=args.seed,
        duration=args.duration,
        rpm=args.rpm,
        **options,
    )
