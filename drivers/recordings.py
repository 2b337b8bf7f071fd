"""Readers of recorded data for `pdm-agent replay` and `model train`: a CSV of records or raw
samples, a directory of burst captures, a MATLAB file of signals (CWRU layout).

Both raise `InputError` naming the file and line of the first problem; the command line prints it
and exits 2. Timestamps without a zone are taken as UTC (the replay only needs their differences).

>>> guess_delimiter("datetime;a;b")
';'
>>> capture_time("2004.02.12.10.32.39") == capture_time("b-2004-02-12T10:32:39.txt")
True
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from drivers.base import WAVEFORM, driver_for

# Columns that label data rather than measure it (benchmark files carry them): never channels
# unless --columns names them.
LABEL_COLUMNS = {"anomaly", "changepoint", "label", "labels", "is_anomaly", "target", "fault"}
# A CSV whose time column steps by at most this is raw waveform samples, not records: process
# transmitters report at most a few times a second, vibration is sampled at hundreds of Hz or more.
WAVEFORM_MAX_STEP_S = 0.005
_MIN_EPOCH_S, _MAX_EPOCH_S = -62135596800.0, 253402300799.0  # 0001-01-01 and 9999-12-31T23:59:59 UTC
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d.%m.%Y %H:%M:%S",
                 "%Y-%m-%d %H:%M", "%Y-%m-%d")
_ISO_NAME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T _](\d{2})[:\-_]?(\d{2})[:\-_]?(\d{2})(\.\d+)?")
_DOTTED_NAME = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})\.(\d{2})\.(\d{2})\.(\d{2})")


class InputError(Exception):
    """Bad replay input; the message names the file (and line)."""


@dataclass(frozen=True)
class Table:
    """A CSV of records: `ts` epoch seconds, `stamps` the timestamp cells as written, `values` (n, c)."""

    path: str
    ts: np.ndarray
    stamps: list[str]
    columns: list[str]
    values: np.ndarray
    time_column: str | None = None  # None: no time column, records 1 s apart


def guess_delimiter(header: str) -> str:
    """The most frequent of `,` `;` tab in the header line (`,` when none occurs)."""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def parse_time(text: str) -> float:
    """Epoch seconds from a number (epoch seconds) or a date-time string (naive = UTC).

    >>> parse_time("1581170000"), parse_time("1970-01-01 00:01:00"), parse_time("1970-01-01T00:00:01Z")
    (1581170000.0, 60.0, 1.0)
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        dt = None
        for fmt in _DATE_FORMATS:
            try:
                dt = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if dt is None:
            raise ValueError(f"cannot read {text!r} as a date-time or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _number(cell: str) -> float:
    cell = cell.strip()
    return math.nan if cell in ("", "nan", "NaN", "NA", "null") else float(cell)


def read_csv(path: str, columns: list[str] | None = None) -> Table:
    """Read a CSV of records (header row; delimiter `,` `;` or tab sniffed from the header)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header_line = f.readline()
            if not header_line.strip():
                raise InputError(f"{path}:1: empty file; a header row is expected")
            delimiter = guess_delimiter(header_line)
            f.seek(0)
            rows = list(csv.reader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    header = [h.strip() for h in rows[0]]
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]
    if not body:
        raise InputError(f"{path}:2: no data rows after the header")
    time_col = next((i for i, h in enumerate(header) if re.search("time|date", h, re.IGNORECASE)), None)
    for line, r in body:
        if len(r) != len(header):
            raise InputError(f"{path}:{line}: {len(r)} fields, the header has {len(header)} "
                             f"(delimiter {delimiter!r})")
    if columns:
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}:1: no column {', '.join(map(repr, missing))}; columns: {', '.join(header)}")
        chosen = [header.index(c) for c in columns]
    else:
        first = body[0][1]
        chosen = []
        for i, h in enumerate(header):
            if i == time_col or h.lower() in LABEL_COLUMNS:
                continue
            try:
                _number(first[i])
                chosen.append(i)
            except ValueError:
                pass  # a text column (an id, a status): not a channel
        if not chosen:
            raise InputError(f"{path}:{body[0][0]}: no numeric column besides the timestamp")
    values = np.empty((len(body), len(chosen)))
    for j, i in enumerate(chosen):
        try:
            values[:, j] = [_number(r[i]) for _, r in body]
        except ValueError:
            for line, r in body:
                try:
                    _number(r[i])
                except ValueError:
                    raise InputError(f"{path}:{line}: column {header[i]!r}: {r[i]!r} is not a number") from None
    if time_col is None:
        stamps = [str(k) for k in range(len(body))]
        ts = np.arange(len(body), dtype=float)  # no timestamp column: one record per second
    else:
        stamps = [r[time_col].strip() for _, r in body]
        ts = np.empty(len(body))
        for k, (line, r) in enumerate(body):
            try:
                ts[k] = parse_time(r[time_col])
            except ValueError as exc:
                raise InputError(f"{path}:{line}: column {header[time_col]!r}: {exc}") from None
        ts = _checked_times(path, body, time_col, header[time_col], ts)
    return Table(path, ts, stamps, [header[i] for i in chosen], values,
                 None if time_col is None else header[time_col])


def _checked_times(path: str, body, time_col: int, column: str, ts: np.ndarray) -> np.ndarray:
    """Epoch seconds, in time order. Numbers this large are epoch milliseconds (above 1e11 s, the
    year 5138) or microseconds (above 1e14). A non-finite time, one outside the years 1-9999, or one
    earlier than the row before is an InputError naming its line."""
    numeric = False
    try:
        float(body[0][1][time_col])
        numeric = True
    except ValueError:
        pass
    if numeric and np.all(np.isfinite(ts)):
        big = float(np.median(np.abs(ts)))
        ts = ts / 1e6 if big > 1e14 else ts / 1e3 if big > 1e11 else ts
    for k, t in enumerate(ts.tolist()):
        if not (math.isfinite(t) and _MIN_EPOCH_S <= t <= _MAX_EPOCH_S):
            raise InputError(f"{path}:{body[k][0]}: column {column!r}: {body[k][1][time_col].strip()!r} is not "
                             "a time between the years 1 and 9999")
        if k and t < ts[k - 1]:
            raise InputError(f"{path}:{body[k][0]}: column {column!r}: the time goes back (earlier than line "
                             f"{body[k - 1][0]}); replay needs the rows in time order: sort the file by time")
    return ts


def time_column_rate(table: Table) -> float | None:
    """Samples per second a CSV's time column implies when its rows are raw waveform samples: the
    median time step is at most `WAVEFORM_MAX_STEP_S` (200 Hz or faster). None otherwise, or without
    a time column. The rate is rounded to 6 significant digits (timestamps are written rounded).

    >>> t = Table("x.csv", np.arange(8) / 3200.0, [], ["ax"], np.zeros((8, 1)), "time")
    >>> time_column_rate(t), time_column_rate(Table("y.csv", np.arange(8.0), [], ["ax"], np.zeros((8, 1)), "time"))
    (3200.0, None)
    """
    if table.time_column is None or len(table.ts) < 2:
        return None
    step = float(np.median(np.diff(table.ts)))
    if not 0 < step <= WAVEFORM_MAX_STEP_S:
        return None
    return float(f"{1.0 / step:.6g}")


def waveform_rate(table: Table, rate: float | None, base=None) -> tuple[float | None, str]:
    """Is this CSV raw waveform samples, and at what rate? (rate or None for records, a remark).

    In this order: `--rate HZ`; a --config sensor that sets `sample_rate` (a waveform protocol,
    not modbus); a time column stepping by at most 5 ms (`time_column_rate`).
    A stated rate that disagrees with the time column by more than 1 % is used, with a remark."""
    seen = time_column_rate(table)
    stated = rate or (base.sample_rate if base is not None and driver_for(base.protocol).kind == WAVEFORM
                      and "sample_rate" in base.model_fields_set else None)
    if stated is None:
        return seen, ""
    if seen is None and table.time_column is not None and len(table.ts) > 1:
        step = float(np.median(np.diff(table.ts)))
        return stated, (f"{table.path}: the time column steps by {step:g} s, like records, but the "
                        f"stated rate {stated:g} Hz makes its rows raw samples")
    if seen is not None and abs(seen - stated) > 0.01 * stated:
        return stated, (f"{table.path}: the time column steps at {seen:g} Hz; using the stated "
                        f"{stated:g} Hz")
    return stated, ""


def capture_time(name: str) -> float | None:
    """Capture time (epoch s, UTC) from a burst file name, ISO-like or dotted; None if neither."""
    m = _ISO_NAME.search(name) or _DOTTED_NAME.search(name)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def list_bursts(directory: str) -> list[tuple[float, str]]:
    """(capture time, path) of every burst file in `directory`, sorted by capture time."""
    found = []
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if entry.startswith(".") or not os.path.isfile(path):
            continue
        t = capture_time(entry)
        if t is None:
            raise InputError(f"{path}: no capture time in the file name (expected e.g. 2004-02-12T10:32:39 "
                             "or 2004.02.12.10.32.39)")
        found.append((t, path))
    if not found:
        raise InputError(f"{directory}: no burst files")
    found.sort()
    return found


def read_burst(path: str) -> np.ndarray:
    """Raw samples (n, c) of one burst file: whitespace- or comma-separated numbers, one sample a line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    lines = text.replace(",", " ").replace(";", " ").split("\n")
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise InputError(f"{path}: empty burst file")
    width = len(lines[first].split())
    try:
        flat = np.array(" ".join(lines).split(), dtype=float)
    except ValueError:
        flat = None
    if flat is None or flat.size % width:
        for k, ln in enumerate(lines):
            fields = ln.split()
            if not fields:
                continue
            if len(fields) != width:
                raise InputError(f"{path}:{k + 1}: {len(fields)} columns, line {first + 1} has {width}")
            try:
                [float(v) for v in fields]
            except ValueError:
                raise InputError(f"{path}:{k + 1}: not a number in {ln.strip()[:60]!r}") from None
        raise InputError(f"{path}: unreadable samples")
    return flat.reshape(-1, width)


def pick_columns(names: list[str], columns: list[str] | None, where: str) -> list[int]:
    """Indexes of `columns` in `names` (all when None); a column matches a name, or its `_<col>` /
    `<col>_time` suffix (CWRU signal names). InputError naming `where` and what is available."""
    if not columns:
        return list(range(len(names)))
    idx = []
    for c in columns:
        hits = [i for i, n in enumerate(names) if n == c or n.endswith("_" + c) or n.endswith(c + "_time")]
        if not hits:
            raise InputError(f"{where}: no column {c!r}; available: {', '.join(names)}")
        idx.append(hits[0])
    return idx


def read_mat(path: str, columns: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The ``*_time`` signals of a MATLAB file (CWRU layout), truncated to a common length."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .mat file ({exc})") from None
    names = sorted(k for k in mat if k.endswith("_time"))
    if not names:
        raise InputError(f"{path}: no *_time signals")
    short = [n.split("_")[-2] for n in names]  # X097_DE_time -> DE
    sel = pick_columns(short, columns, path)
    n = min(len(mat[names[i]]) for i in sel)
    return [short[i] for i in sel], np.column_stack([mat[names[i]].ravel()[:n] for i in sel])
