"""Reload behaviour as data (Telegraf's testcases style): each tests/cases/reload/<case>/ holds the
running configuration (old.yaml), the one SIGHUP reads (new.yaml) and what the reload must do
(expected.plan: the fields of agent/reload.ReloadPlan that are not at their default, as JSON)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.reload import ReloadPlan, plan_reload

CASES = sorted(p for p in (Path(__file__).parent / "cases" / "reload").iterdir() if p.is_dir())


def _non_default(plan: ReloadPlan) -> dict:
    blank = ReloadPlan()
    return {f.name: (list(v) if isinstance(v, tuple) else v) for f in dataclasses.fields(plan)
            if (v := getattr(plan, f.name)) != getattr(blank, f.name)}


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_reload_case(case):
    old = parse_config((case / "old.yaml").read_text(), str(case / "old.yaml"))
    new = parse_config((case / "new.yaml").read_text(), str(case / "new.yaml"))
    assert _non_default(plan_reload(old, new)) == json.loads((case / "expected.plan").read_text())


def test_there_are_cases():
    assert len(CASES) >= 8
