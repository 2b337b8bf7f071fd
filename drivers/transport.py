"""Serial transport: open, read in blocks, survive unplugging.

A sensor on a gateway gets unplugged, re-enumerated (a new /dev/ttyUSBn behind the same
/dev/serial/by-id/ link) or powered late. The transport hides all of that behind `read()`,
which never raises and never blocks much longer than `read_timeout`: while the port is
away it returns b"" and retries on an exponential back-off with jitter, so the driver
loop stays responsive to stop and reload requests.

Reads take everything the OS has buffered in one call (`read(in_waiting)`), never
`readline()`, which pyserial implements one byte per call.
"""

from __future__ import annotations

import random
import time

import serial
import structlog
from serial.urlhandler import protocol_socket

# Errors that mean "the port is gone or unusable", as opposed to bugs. ValueError covers
# an unknown URL scheme or a baud rate the driver refuses: configuration mistakes that
# must not kill the agent (it reports them and keeps retrying, like a missing device).
_PORT_ERRORS = (serial.SerialException, OSError)
_OPEN_ERRORS = (*_PORT_ERRORS, ValueError)

# Upper bound of one non-blocking drain on socket:// ports (see `read`).
_SOCKET_DRAIN_BYTES = 65536


class SerialTransport:
    """A self-healing, read-mostly serial port.

    Parameters
    ----------
    port : str
        Device path (symlinks such as /dev/serial/by-id/... are resolved again at every
        open) or any pyserial URL: ``socket://host:port``, ``rfc2217://host:port``, ``loop://``.
    baudrate : int
        Line speed; ignored by transports that have none (sockets, pseudo-terminals).
    read_timeout : float
        Longest time `read()` waits for data, and longest it sleeps while the port is away.
    backoff_min, backoff_max : float
        Bounds of the delay between open attempts, in seconds; it doubles after each
        failure (with jitter, so gateways restarted together do not retry in step) and
        returns to `backoff_min` once the port opens.
    log : structlog-like logger, optional
        Gets one event per state change (opened, unavailable, lost, reopened), never one per retry.

    Not thread-safe: call `read`, `write` and `close` from the one thread that drives the port.

    Examples
    --------
    >>> from structlog.testing import CapturingLogger
    >>> log = CapturingLogger()
    >>> t = SerialTransport("loop://", read_timeout=0.01, log=log)
    >>> t.write(b"0.1,0.2\\n")
    8
    >>> t.read()
    b'0.1,0.2\\n'
    >>> t.online, t.bytes_read
    (True, 8)
    >>> [(c.method_name, c.args[0]) for c in log.calls]
    [('info', 'sensor port opened')]
    >>> t.close()
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        read_timeout: float = 0.2,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        log=None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.read_timeout = read_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.log = log if log is not None else structlog.get_logger()
        self._serial: serial.SerialBase | None = None
        self._next_attempt = 0.0  # time.monotonic() of the next open attempt
        self._backoff = backoff_min
        self._opened_before = False
        self._unavailable_logged = False
        self._offline_since: float | None = None
        self._reconnects = 0
        self._bytes_read = 0
        self._last_error: str | None = None

    @property
    def online(self) -> bool:
        """True while the port is open."""
        return self._serial is not None

    @property
    def reconnects(self) -> int:
        """Successful re-opens after the port had been open and was lost."""
        return self._reconnects

    @property
    def bytes_read(self) -> int:
        return self._bytes_read

    @property
    def last_error(self) -> str | None:
        """The most recent open or read error (kept after recovery, for health reports)."""
        return self._last_error

    def read(self) -> bytes:
        """Everything that arrived, waiting up to `read_timeout` for the first byte.

        Returns b"" on timeout and while the port is away; never raises for port errors.
        (pyserial's socket:// close sleeps 0.3 s, so the read that notices a dropped
        socket takes that long once.)
        """
        if self._serial is None and not self._open_when_due():
            return b""
        ser = self._serial
        try:
            # Blocks (select) until at least one byte or the timeout; the second read
            # picks up whatever arrived with it, so a burst comes back as one block.
            data = ser.read(max(1, ser.in_waiting))
            if data and isinstance(ser, protocol_socket.Serial):
                # socket:// reports in_waiting as 0 or 1 ("something"), which would
                # drain a burst two bytes per call; a zero-timeout read takes it all.
                # Its timeout setter is free (no termios call), unlike a real port's.
                ser.timeout = 0
                try:
                    data += ser.read(_SOCKET_DRAIN_BYTES)
                finally:
                    ser.timeout = self.read_timeout
            elif data:
                waiting = ser.in_waiting
                if waiting:
                    data += ser.read(waiting)
        except _PORT_ERRORS as exc:
            # A closed pty or unplugged adapter shows up as EIO, or as pyserial's
            # "device reports readiness to read but returned no data".
            self._lost(exc)
            return b""
        self._bytes_read += len(data)
        return data

    def write(self, data: bytes) -> int:
        """Send `data` (for request/response protocols); returns bytes written, 0 while offline."""
        if self._serial is None and not self._open_when_due():
            return 0
        try:
            written = self._serial.write(data)
            self._serial.flush()
        except _PORT_ERRORS as exc:
            self._lost(exc)
            return 0
        return written or 0

    def close(self) -> None:
        """Release the port. A later `read()` opens it again."""
        self._release()
        self._next_attempt = 0.0
        self._backoff = self.backoff_min

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _open_when_due(self) -> bool:
        """Try to open if the back-off allows, sleeping at most `read_timeout` for it."""
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, self.read_timeout))
            if time.monotonic() < self._next_attempt:
                return False
        try:
            # serial_for_url opens plain paths too; opening the path (not a cached
            # resolved node) follows a by-id symlink to wherever it points now.
            self._serial = serial.serial_for_url(
                self.port,
                baudrate=self.baudrate,
                timeout=self.read_timeout,
                write_timeout=self.read_timeout,
                # flock on device paths: a second reader would steal bytes from lines.
                exclusive=True if "://" not in self.port else None,
            )
        except _OPEN_ERRORS as exc:
            self._last_error = str(exc)
            if not self._unavailable_logged and self._offline_since is None:
                self.log.warning("sensor port unavailable, retrying", port=self.port, error=str(exc))
                self._unavailable_logged = True
            self._schedule_retry()
            return False
        self._backoff = self.backoff_min
        self._unavailable_logged = False
        if self._opened_before:
            self._reconnects += 1
            offline_s = time.monotonic() - self._offline_since if self._offline_since else 0.0
            self.log.info(
                "sensor port reopened", port=self.port, offline_s=round(offline_s, 3),
                reconnects=self._reconnects,
            )
        else:
            self.log.info("sensor port opened", port=self.port, baudrate=self.baudrate)
        self._opened_before = True
        self._offline_since = None
        return True

    def _lost(self, exc: Exception) -> None:
        self._last_error = str(exc)
        self._release()
        self._offline_since = time.monotonic()
        self.log.warning("sensor port lost", port=self.port, error=str(exc))
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        # "Equal jitter": between half and all of the current delay, then double it.
        delay = self._backoff * random.uniform(0.5, 1.0)
        self._next_attempt = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, self.backoff_max)

    def _release(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except _PORT_ERRORS:
                pass  # closing a vanished device may fail; it is released either way
