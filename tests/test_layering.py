"""The import layering, read from the AST (lazy imports included): drivers/ imports neither agent/
nor models/; models/ never imports agent/ and imports drivers/ only from models/training/; no
import cycle between modules; no source file over 400 lines. The same rules as the review tool."""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKGS = ("agent", "drivers", "models")
MAX_LINES = 400


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for pkg in PKGS:
        for path in sorted((root / pkg).rglob("*.py")):
            mod = ".".join(path.relative_to(root).with_suffix("").parts)
            out[mod.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, mod: str):
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + [node.module] if node.module else base)
            yield name, node.lineno
            for alias in node.names:
                yield f"{name}.{alias.name}", node.lineno


def breaches(root: Path) -> list[str]:
    """Every breach of the layering under `root`, one line each (empty: none)."""
    mods = _modules(root)
    found, graph = [], {m: set() for m in mods}
    for mod, path in mods.items():
        rel = path.relative_to(root)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES:
            found.append(f"{rel}: {n} lines (> {MAX_LINES})")
        top = mod.split(".")[0]
        for name, line in _imports(path, mod):
            target = name.split(".")[0]
            if target not in PKGS:
                continue
            parts = name.split(".")
            while parts and ".".join(parts) not in mods:
                parts.pop()
            if parts and ".".join(parts) != mod:
                graph[mod].add(".".join(parts))
            if top in ("drivers", "models") and target == "agent":
                found.append(f"{rel}:{line}: {top}/ imports agent/ ({name})")
            elif top == "drivers" and target == "models":
                found.append(f"{rel}:{line}: drivers/ imports models/ ({name})")
            elif top == "models" and target == "drivers" and not mod.startswith("models.training"):
                found.append(f"{rel}:{line}: models/ imports drivers/ outside models/training ({name})")
    found += [f"import cycle: {' <-> '.join(sorted(c))}" for c in _cycles(graph)]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1; stack.append(start); on.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop(); on.discard(w); comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


def test_the_checkout_keeps_its_layers():
    assert breaches(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for pkg in PKGS:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_check_finds_each_kind_of_breach(tmp_path):
    root = _tree(tmp_path, {
        "agent/a.py": "from agent import b\n",
        "agent/b.py": "def f():\n    from agent.a import x\n",  # a lazy import still closes a cycle
        "drivers/d.py": "def f():\n    from agent.records import Alert\n",
        "drivers/e.py": "import models.gaussian\n",
        "models/gaussian.py": "from ..drivers import d\n",
        "models/training/t.py": "from drivers import d\n",  # allowed: training reads recordings
        "models/long.py": "x = 1\n" * (MAX_LINES + 1),
    })
    found = breaches(root)
    assert any(f.startswith("drivers/d.py:2: drivers/ imports agent/") for f in found)
    assert any(f.startswith("drivers/e.py:1: drivers/ imports models/") for f in found)
    assert any(f.startswith("models/gaussian.py:1: models/ imports drivers/ outside") for f in found)
    assert "models/long.py: 401 lines (> 400)" in found
    assert "import cycle: agent.a <-> agent.b" in found
    assert not any(f.startswith("models/training") for f in found), found
    assert {f.split(":")[0] for f in found} == {"drivers/d.py", "drivers/e.py", "models/gaussian.py", "models/long.py",
                                                 "import cycle"}, found
