"""Real file-system faults for storage tests: a small or read-only tmpfs, mounted for one test.

Mounting needs root (or CAP_SYS_ADMIN); `tmpfs` returns False where it cannot mount, and the
test then uses its documented replacement (e.g. a path under a regular file, which no user,
root included, can create a directory in).
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """Mount a tmpfs of `size` (e.g. "400k") at `path` for the block; yield whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    mounted = _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path))
    try:
        yield mounted
    finally:
        if mounted:
            _run("umount", "-l", str(path))


def remount(path: Path, opts: str) -> None:
    """Change a mounted tmpfs's options (e.g. "size=8m" to free space)."""
    subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], check=True, capture_output=True)
