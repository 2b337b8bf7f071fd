"""The status document, also on local disk: `storage.dir/status.json`.

`pdm-agent status` reads the retained status from the broker; on a gateway whose broker is
unreachable (the very moment an operator logs in to look) it falls back to this file, which the
agent rewrites every `mqtt.status_interval_s` with the document it publishes, and marks
`offline` when it stops. A crashed agent cannot mark it, so readers also check that the pid in
`pdm-agent.pid` is a running pdm-agent (see `agent_pid`).
"""

from __future__ import annotations

import json
import os

NAME = "status.json"
PIDFILE = "pdm-agent.pid"


def write(storage_dir: str, document: dict) -> None:
    """Atomically replace the file (a reader never sees half a document)."""
    path = os.path.join(storage_dir, NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(document, f, separators=(",", ":"), default=str)
    os.replace(tmp, path)


def read(storage_dir: str) -> dict | None:
    try:
        with open(os.path.join(storage_dir, NAME)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def agent_pid(storage_dir: str) -> int | None:
    """The pid of the running pdm-agent named in the pidfile, or None (none, or a stale file
    naming an unrelated process by now)."""
    try:
        with open(os.path.join(storage_dir, PIDFILE)) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return None
    return pid if (b"pdm-agent" in cmdline or b"agent.cli" in cmdline) else None
