"""Shared fixtures: a real Mosquitto per test (see tests/broker.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from broker import Broker  # tests/ is on sys.path (pytest's default "prepend" import mode)

# Let `pytest` run from a plain clone too, before the project is pip-installed.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def _start(tmp_path, persistence: bool) -> Broker:
    workdir = tmp_path / "mosquitto"
    workdir.mkdir(exist_ok=True)
    try:
        broker = Broker(workdir, persistence=persistence)
    except RuntimeError as e:
        # Fail, never skip: a suite that silently skips its broker tests proves nothing.
        pytest.fail(str(e), pytrace=False)
    broker.start()
    return broker


@pytest.fixture
def broker(tmp_path):
    """A fresh Mosquitto on a free loopback port (no persistence); `.stop()`/`.start()` restart it."""
    b = _start(tmp_path, persistence=False)
    yield b
    b.stop()


@pytest.fixture
def persistent_broker(tmp_path):
    """Like `broker`, but sessions and queued QoS 1 messages survive `.stop()`/`.start()`."""
    b = _start(tmp_path, persistence=True)
    yield b
    b.stop()
