"""The agent's local control channel: a unix socket in the state directory, mode 0600.

Only the service user (the socket's owner) and root can connect: the socket file is created
with mode 0600 inside storage.dir, and every connection's peer uid (SO_PEERCRED) is checked
again, so a mode changed by hand does not open it. Nothing listens on the network.

Protocol: one JSON object per connection, one line each way.

    request   {"command": "baseline-reset", "sensor": "pump1" | null}
    reply     {"ok": true, "sensors": ["pump1"]} | {"ok": false, "error": "..."}

`pdm-agent baseline reset` (agent/baseline_cli.py) is the client.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from typing import Callable

SOCKET_NAME = "control.sock"
MAX_REQUEST = 4096  # bytes; a request is a few dozen


class ControlUnavailable(Exception):
    """No agent answers on the socket (not running, or another state directory)."""


def socket_path(storage_dir: str) -> str:
    return os.path.join(storage_dir, SOCKET_NAME)


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):  # not Linux: the file mode is the only guard
        return None
    return struct.unpack("3i", creds)[1]


class ControlServer:
    """Serves requests on `path` with `handler(request) -> reply` on its own thread.

    `start()` raises OSError when the socket cannot be created (path too long for a unix
    socket, read-only directory) or another agent already answers on it.
    """

    def __init__(self, path: str, handler: Callable[[dict], dict], log) -> None:
        self.path = path
        self.handler = handler
        self.log = log
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if os.path.exists(self.path):
            try:
                request(self.path, {"command": "ping"}, timeout=1.0)
            except ControlUnavailable:
                os.unlink(self.path)  # left by an agent that was killed
            else:
                raise OSError(f"another agent already answers on {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(4)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(5.0)
                try:
                    reply = self._answer(conn)
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass

    def _answer(self, conn: socket.socket) -> dict:
        uid = _peer_uid(conn)
        if uid is not None and uid not in (0, os.getuid()):
            self.log.warning("control request refused: not the service user or root", uid=uid)
            return {"ok": False, "error": "permission denied"}
        data = b""
        while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
        try:
            req = json.loads(data)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            return {"ok": False, "error": "malformed request"}
        if req.get("command") == "ping":
            return {"ok": True}
        try:
            return self.handler(req)
        except Exception as exc:  # a failing command must not take the channel down
            self.log.exception("control request failed", command=req.get("command"))
            return {"ok": False, "error": str(exc)}


def serve(path: str, handler: Callable[[dict], dict], log) -> ControlServer | None:
    """A started ControlServer, or None after one log line saying why (the agent runs on
    without it). Call before starting other threads: it sets the process umask for a moment."""
    server = ControlServer(path, handler, log)
    try:
        server.start()
    except OSError as exc:
        log.error("no control socket: `pdm-agent baseline reset` cannot reach this agent", path=path, error=str(exc))
        return None
    return server


def request(path: str, message: dict, timeout: float = 10.0) -> dict:
    """Send one request to the agent at `path`; its reply. ControlUnavailable when nothing
    answers (no socket, connection refused, no reply within `timeout`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (OSError, socket.timeout) as exc:
        raise ControlUnavailable(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        return json.loads(data)
    except ValueError:
        raise ControlUnavailable(f"{path}: no valid reply") from None
