"""The `lines` protocol: one ASCII line per sample, comma-separated values in channel order.

    b"0.012,-0.003,0.998,41.2\\n"       (``\\r\\n`` accepted, empty lines skipped)

Serial reads cut lines anywhere, so the parser carries the incomplete tail to the next
`feed`. A port opened (or re-opened) on a sensor that streams all the time joins it in the
middle of a line, and that tail can parse as a whole but wrong sample (``-0.02962,...`` read
from its third byte is ``02962,...``: 2962 g). So after every open or `reset` the bytes up to
and including the first newline are discarded and counted (``bytes_skipped_at_open``); the
cost is one sample per open, which no analysis window notices. A whole block of complete lines is parsed at once (one split, one numpy
conversion); only a block that contains a bad line is walked line by line, so the bad
lines can be dropped and counted while the good ones in the same block are kept.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from drivers.base import WAVEFORM, Driver, PtyServer, register
from drivers.config import Section
from pydantic import Field
from drivers.sources import SerialStreamSource

# Bytes that may appear in a block the fast path takes on trust (for bytes.translate's
# delete argument). Letters other than the exponent (nan, inf, garbage) and non-ASCII
# bytes send the block to the per-line path.
_FAST_BYTES = b"0123456789+-.eE, \t\n"

ERROR_KINDS = ("bad_field_count", "not_a_number", "non_finite", "too_long")


class LinesParser:
    """Turn a stream of bytes into rows of samples, dropping and counting invalid lines.

    Parameters
    ----------
    n_fields : int
        Values per line (the number of channels).
    max_line : int
        Longest accepted line in bytes, without its line ending. Longer lines are
        dropped, and an over-long incomplete tail is discarded up to the next newline so
        a stream without newlines cannot grow the buffer.
    at_boundary : bool
        True only when the first byte fed is known to start a line (a file read from its
        start, a test); a serial port never knows it, so the default discards up to the
        first newline.

    Attributes
    ----------
    errors : dict[str, int]
        Dropped lines by reason: ``bad_field_count``, ``not_a_number`` (also non-ASCII
        garbage), ``non_finite`` (nan, inf, overflow), ``too_long``.
    lines_ok : int
        Lines returned as rows so far.
    bytes_skipped_at_open : int
        Bytes discarded before the first line boundary after each open or `reset`.

    Examples
    --------
    >>> p = LinesParser(n_fields=2)
    >>> p.feed(b"62,7\\n1.5,2\\r\\n3,4\\nbad\\n5,")
    array([[1.5, 2. ],
           [3. , 4. ]])
    >>> p.feed(b"6\\n")
    array([[5., 6.]])
    >>> p.lines_ok, p.errors["bad_field_count"], p.bytes_skipped_at_open
    (3, 1, 5)
    """

    def __init__(self, n_fields: int, max_line: int = 256, at_boundary: bool = False) -> None:
        if n_fields < 1:
            raise ValueError(f"n_fields must be >= 1, got {n_fields}")
        self.n_fields = n_fields
        self.max_line = max_line
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.lines_ok = 0
        self._tail = b""
        self._discarding = False  # inside an over-long line, until its newline
        self._syncing = not at_boundary  # joined the stream anywhere: wait for a line boundary
        self.bytes_skipped_at_open = 0

    def feed(self, data: bytes) -> np.ndarray:
        """Parse `data` (any slice of the stream); return every complete valid line as a row.

        Returns
        -------
        numpy.ndarray
            Shape ``(k, n_fields)``, float64, all finite; ``k`` may be 0.
        """
        data = bytes(data)
        if self._discarding or self._syncing:
            newline = data.find(b"\n")
            if self._syncing:
                self.bytes_skipped_at_open += len(data) if newline < 0 else newline + 1
            if newline < 0:
                return self._empty()
            data = data[newline + 1 :]
            self._discarding = self._syncing = False
        buf = self._tail + data if self._tail else data
        end = buf.rfind(b"\n") + 1
        block, self._tail = buf[:end], buf[end:]
        # +1 leaves room for the \r of a \r\n ending that is still in flight.
        if len(self._tail) > self.max_line + 1:
            self.errors["too_long"] += 1
            self._tail = b""
            self._discarding = True
        if not block:
            return self._empty()
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
        rows = self._parse_block(block)
        if rows is None:
            rows = self._parse_lines(block)
        return rows

    def input_errors(self) -> dict:
        return dict(self.errors)

    def counters(self) -> dict:
        return {"lines_ok": self.lines_ok, "line_errors": dict(self.errors),
                "bytes_skipped_at_open": self.bytes_skipped_at_open}

    def reset(self) -> None:
        """Forget the incomplete tail, e.g. after the port reconnected: the old stream's
        half line must not be glued to the new stream's first bytes, and the new stream's
        first bytes are discarded up to its first newline (they may be half a line)."""
        self._tail = b""
        self._discarding = False
        self._syncing = True

    def _parse_block(self, block: bytes) -> np.ndarray | None:
        """Fast path: the whole block in one conversion, or None when a line needs a closer look."""
        if block.translate(None, _FAST_BYTES):
            return None
        # Every line holds n_fields - 1 commas then a newline exactly when the sequence
        # of delimiters, cut into rows of n_fields, ends each row with the only newline.
        raw = np.frombuffer(block, dtype=np.uint8)
        at = np.flatnonzero((raw == 44) | (raw == 10))
        if len(at) % self.n_fields:
            return None
        delimiters = raw[at].reshape(-1, self.n_fields)
        if not ((delimiters[:, -1] == 10).all() and (delimiters[:, :-1] == 44).all()):
            return None
        # Empty lines and empty fields pass this check but fail the conversion below.
        if len(block) > self.max_line:
            newlines = at[self.n_fields - 1 :: self.n_fields]
            if np.diff(newlines, prepend=-1).max() > self.max_line + 1:
                return None
        try:
            values = np.array(block[:-1].replace(b"\n", b",").split(b","), dtype=np.float64)
        except ValueError:  # a malformed number such as "1.2.3" or "-"
            return None
        rows = values.reshape(-1, self.n_fields)
        if not np.isfinite(values).all():  # 1e999 overflows to inf without letters in it
            finite = np.isfinite(rows).all(axis=1)
            self.errors["non_finite"] += int((~finite).sum())
            rows = rows[finite]
        self.lines_ok += len(rows)
        return rows

    def _parse_lines(self, block: bytes) -> np.ndarray:
        """Slow path for a block with bad lines: validate each line, keep the good ones."""
        good = []
        for line in block.split(b"\n")[:-1]:
            if not line.strip():
                continue
            if len(line) > self.max_line:
                self.errors["too_long"] += 1
                continue
            fields = line.split(b",")
            if len(fields) != self.n_fields:
                self.errors["bad_field_count"] += 1
                continue
            try:
                # The same conversion as the fast path, so a line's fate never depends
                # on which path its block took.
                row = np.array(fields, dtype=np.float64)
            except (ValueError, UnicodeError):
                self.errors["not_a_number"] += 1
                continue
            if not np.isfinite(row).all():
                self.errors["non_finite"] += 1
                continue
            good.append(row)
        self.lines_ok += len(good)
        return np.vstack(good) if good else self._empty()

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.n_fields), dtype=np.float64)


class SerialLinesSource(SerialStreamSource):
    """`protocol: lines`: one ASCII line of comma-separated values per sample."""

    def __init__(self, sensor: str, port: str, baudrate: int, channels: tuple[str, ...], log=None) -> None:
        super().__init__(sensor, port, baudrate, channels, LinesParser(len(channels)), log=log)


class LinesSettings(Section):
    """A `lines` sensor has no keys of its own beyond the serial port every sensor has."""

    protocol: Literal["lines"] = Field("lines", validate_default=True)


def _open(sensor_cfg, log=None) -> SerialLinesSource:
    return SerialLinesSource(sensor_cfg.name, sensor_cfg.port, sensor_cfg.baudrate, tuple(sensor_cfg.channels), log=log)


def _serve_pty(link: str, **kwargs) -> int:
    """The pty server of `simulate --protocol lines` (drivers/base.PtyServer): the machine's
    samples as ASCII lines."""
    from drivers.pty_server import format_lines, stream

    def encode(block, channels):
        return format_lines(block, channels).splitlines(keepends=True)  # one record per line

    return stream(link, "lines", lambda channels, block_n: encode, **kwargs)


register(Driver("lines", WAVEFORM, _open, settings=LinesSettings, pty_server=PtyServer(_serve_pty)))
