"""How values sit in Modbus registers, shared by the client (drivers/modbus.py) and the simulated
slave (drivers/modbus_slave.py): read planning, decoding and encoding of register words, and the lock
every lazy pymodbus import takes.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

from drivers.presets import Register

# pymodbus is imported lazily (only Modbus sensors pay for it), from worker threads. Its package
# imports are circular, so two threads importing it for the first time at once can see a partly
# initialised module (ImportError): every lazy pymodbus import takes this lock.
PYMODBUS_IMPORT = threading.Lock()

MAX_SPAN = 125  # registers per read request (Modbus limit for function 03/04)
MAX_HOLE = 16  # read across a hole this small rather than sending one more request


@dataclass(frozen=True, slots=True)
class Read:
    """One Modbus read request: a table, a start address, a word count and the registers it covers."""

    table: str  # holding | input
    address: int
    count: int
    registers: tuple[Register, ...]


def plan_reads(registers: tuple[Register, ...] | list[Register]) -> list[Read]:
    """Group registers into read requests: same table, near each other, at most MAX_SPAN long.

    >>> from drivers.presets import QM30VT2, WTVB01
    >>> [(r.table, r.address, r.count) for r in plan_reads(QM30VT2.registers)]
    [('holding', 5201, 21)]
    >>> [(r.table, r.address, r.count) for r in plan_reads(WTVB01.registers)]
    [('holding', 52, 19)]
    """
    reads: list[Read] = []
    ordered = sorted(registers, key=lambda r: (r.table, r.address))
    group: list[Register] = []
    for reg in ordered:
        if group:
            first, last = group[0], group[-1]
            end = reg.address + reg.count
            if reg.table != first.table or reg.address - (last.address + last.count) > MAX_HOLE \
                    or end - first.address > MAX_SPAN:
                reads.append(_read(group))
                group = []
        group.append(reg)
    if group:
        reads.append(_read(group))
    return reads


def _read(group: list[Register]) -> Read:
    start = group[0].address
    end = max(r.address + r.count for r in group)
    return Read(group[0].table, start, end - start, tuple(group))


def decode(reg: Register, words: list[int] | tuple[int, ...], word_order: str = "big") -> float:
    """Physical value of `reg` from its raw 16-bit words (high word first unless word_order="little").

    >>> from drivers.presets import Register
    >>> decode(Register("temp.mean_c", 45204, "int16", scale=0.01), [0xFF38])
    -2.0
    >>> decode(Register("v", 40001, "float32"), [0x4048, 0xF5C3])
    3.140000104904175
    >>> decode(Register("n", 40001, "uint32"), [0x0000, 0x0001], word_order="little")
    65536.0
    """
    if word_order == "little":
        words = list(words)[::-1]
    raw = struct.pack(f">{len(words)}H", *words)
    fmt = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}[reg.type]
    (value,) = struct.unpack(fmt, raw)
    return float(value) * reg.scale if reg.scale != 1.0 else float(value)


def encode(reg: Register, value: float, word_order: str = "big") -> list[int]:
    """Raw words for a physical value (the simulated slave's side of `decode`).

    >>> from drivers.presets import Register
    >>> encode(Register("temp.mean_c", 45204, "int16", scale=0.01), -2.0)
    [65336]
    """
    raw = value / reg.scale
    if reg.type != "float32":
        lo, hi = {"uint16": (0, 65535), "int16": (-32768, 32767), "uint32": (0, 2**32 - 1),
                  "int32": (-(2**31), 2**31 - 1)}[reg.type]
        raw = min(max(round(raw), lo), hi)
    fmt = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i", "float32": ">f"}[reg.type]
    words = list(struct.unpack(f">{reg.count}H", struct.pack(fmt, raw)))
    return words[::-1] if word_order == "little" else words
