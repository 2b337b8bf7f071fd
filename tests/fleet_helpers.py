"""Helpers shared by the fleet tests: a log that records, and the numbers inside a document."""

from __future__ import annotations


class RecordingLog:
    """Stands in for the agent's structlog logger: every call kept as (event, fields)."""

    def __init__(self):
        self.lines = []

    def error(self, event, **kw):
        self.lines.append((event, kw))

    info = warning = error


def numbers(obj):
    """Every number in a JSON-like document (bools excluded), as floats."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)
