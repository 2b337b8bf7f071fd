"""Alert behaviour as data (Telegraf's testcases style): every tests/cases/pipeline/<case>/ is
replayed through the daemon's pipeline (`pdm-agent replay`), and the alert level changes must be
exactly those in its expected.out (see tests/cases/pipeline/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = sorted(p for p in (Path(__file__).parent / "cases" / "pipeline").iterdir() if p.is_dir())


def level_changes(out_csv: Path) -> list[str]:
    """`timestamp,level,reason` of every record whose level differs from the one before (clear at start)."""
    lines = out_csv.read_text().splitlines()
    header = lines[0].split(",")
    at = {k: header.index(k) for k in ("timestamp", "level", "reason")}
    changes, previous = ["timestamp,level,reason"], "clear"
    for line in lines[1:]:
        row = line.split(",")
        if row[at["level"]] != previous:
            previous = row[at["level"]]
            changes.append(",".join(row[at[k]] for k in ("timestamp", "level", "reason")))
    return changes


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_pipeline_case(case, tmp_path):
    out = tmp_path / "scores.csv"
    config = ["--config", str(case / "config.yaml")] if (case / "config.yaml").exists() else []
    run = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(case / "input.csv"), "--out", str(out),
                          *config], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert level_changes(out) == (case / "expected.out").read_text().splitlines()


def test_there_are_cases_with_and_without_alerts():
    expected = [(c / "expected.out").read_text().splitlines() for c in CASES]
    assert any(len(e) == 1 for e in expected) and any(len(e) > 1 for e in expected)
    assert any(not (c / "config.yaml").exists() for c in CASES)  # product defaults, at least once
