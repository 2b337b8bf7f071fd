"""The product as a user installs it: a real wheel, a fresh venv, the production config template.

`make test` runs from an editable install, which sees every module in the checkout whether or not
the wheel ships it; these tests build the wheel from a copy of the sources and run the installed
console script from a venv that has nothing else (its dependencies come from the package index or
the local pip cache, as on a gateway). The install goes through `systemd/install.sh` with DESTDIR,
then the staged tree is moved to its PREFIX, which also shows the stage is relocatable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from agentproc import ROOT

from agent.config import Config, ConfigError, parse_config

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
TEMPLATE = ROOT / "systemd" / "production-config.yaml"


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    for item in ("agent", "models", "drivers"):
        shutil.copytree(ROOT / item, src / item, ignore=shutil.ignore_patterns("__pycache__"))
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / item, src / item)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = (tmp / "dist").glob("pdm_agent-*.whl")
    return wheel


def _packages_in_checkout() -> set[str]:
    return {p.parent.relative_to(ROOT).as_posix() for top in ("agent", "models", "drivers")
            for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}


def test_wheel_installs_into_a_fresh_venv_and_every_command_runs(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        shipped = {n.rsplit("/", 1)[0] for n in z.namelist() if n.endswith("/__init__.py")}
    assert _packages_in_checkout() <= shipped, _packages_in_checkout() - shipped
    assert "models/training" in shipped

    stage, prefix = tmp_path / "stage", tmp_path / "opt" / "pdm-agent"
    run = subprocess.run(["sh", str(ROOT / "systemd" / "install.sh")], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "DESTDIR": str(stage), "PREFIX": str(prefix), "PYTHON": BASE_PYTHON,
                              "PACKAGE": f"{wheel}[train]"})
    assert run.returncode == 0, run.stdout + run.stderr
    staged = stage / prefix.relative_to("/")
    # Relocatable: nothing in the staged venv names the stage; moved to PREFIX, it runs.
    named = subprocess.run(["grep", "-rlF", str(stage), str(staged)], capture_output=True, text=True)
    assert named.stdout == "", named.stdout[:2000]
    prefix.parent.mkdir(parents=True)
    staged.rename(prefix)
    shutil.rmtree(stage)
    exe = prefix / "venv" / "bin" / "pdm-agent"
    venv_cfg = (prefix / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in venv_cfg

    def cli(*args: str) -> subprocess.CompletedProcess:
        # cwd outside the checkout and no PYTHONPATH: only the installed wheel can answer.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run([str(exe), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)

    out = cli("--help")
    assert out.returncode == 0 and "status" in out.stdout and "watch" in out.stdout, out.stdout + out.stderr
    where = subprocess.run([str(prefix / "venv/bin/python"), "-c", "import models.training.train as t; print(t.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.startswith(str(prefix)), where.stdout + where.stderr
    out = cli("model", "train", "sim:150", "--out", "bundle", "--detector", "pca", "--variant", "fp32")
    assert out.returncode == 0 and (tmp_path / "bundle" / "manifest.json").is_file(), out.stdout + out.stderr
    assert cli("model", "keygen", "--out", "release").returncode == 0
    out = cli("model", "sign", "bundle", "--key", "release.key")
    assert out.returncode == 0, out.stdout + out.stderr
    out = cli("model", "verify", "bundle", "--pubkey", "release.pub")
    assert out.returncode == 0 and out.stdout.startswith("OK"), out.stdout + out.stderr
    (tmp_path / "bundle" / "manifest.json").write_text("{}")
    assert cli("model", "verify", "bundle", "--pubkey", "release.pub").returncode == 2  # tampered: refused


def _uncomment_first_example(text: str) -> str:
    """The template with its first example sensor uncommented, as an operator would do."""
    out, taking, done = [], False, False
    for line in text.splitlines():
        if line.startswith("sensors: []"):
            out.append("sensors:")
            taking = True
            continue
        if taking and not done:
            if line.strip() == "#":
                done = True
                continue
            if line.startswith("  # "):
                out.append("  " + line[4:])
                continue
        out.append(line)
    return "\n".join(out) + "\n"


def test_production_template_is_product_defaults_and_refuses_to_run_unedited():
    text = TEMPLATE.read_text()
    try:
        parse_config(text, str(TEMPLATE))
        raise AssertionError("the unedited template must not validate")
    except ConfigError as exc:
        assert exc.errors == [f"sensors: no sensor configured: add at least one (the installed file has "
                              f"commented examples) ({TEMPLATE}:{_line_of(text, 'sensors: []')})"]
    assert "sim" not in yaml.safe_load(text).get("sensors") and "fault" not in text.replace("default", "")
    edited = parse_config(_uncomment_first_example(text), "edited.yaml")
    (sensor,) = edited.sensors
    assert sensor.protocol == "lines" and sensor.port == "/dev/ttyUSB0"
    # Every section other than the operator's own sensor and device id is the product default ...
    defaults = Config.model_validate({"device": {"id": edited.device.id},
                                      "sensors": [{"name": sensor.name, "port": sensor.port}]})
    for section in ("mqtt", "storage", "aggregates", "logging", "models", "homeassistant"):
        assert getattr(edited, section) == getattr(defaults, section), section
    # ... and so is everything the example sensor spells out.
    assert sensor == defaults.sensors[0]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(needle))
