"""`pdm-agent` command line. Exit codes: 0 success, 1 runtime failure, 2 invalid usage/config."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from agent import __version__
from agent.cli_config import _config_arg, _config_path, _load_or_report

from agent.exit_codes import EXIT_FAIL, EXIT_OK, EXIT_USAGE  # noqa: E402,F401 (one definition)


def cmd_run(args) -> int:
    from agent import logs
    from agent.config import ConfigError
    from agent.service import Service

    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    logs.configure(cfg.logging.level, cfg.logging.format)
    log = logs.get()
    from agent.config_warnings import load_warnings

    for warning in load_warnings(cfg, path):
        log.warning("config warning", detail=warning)
    service = Service(path, log, cfg)
    service.install_signals()
    pidfile = os.path.join(str(cfg.storage.dir), "pdm-agent.pid")
    try:
        return _run_pid(service, pidfile)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        log.exception("agent failed")
        return EXIT_FAIL


def _run_pid(service, pidfile: str) -> int:
    try:
        os.makedirs(os.path.dirname(pidfile), exist_ok=True)
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    except OSError as exc:  # a read-only state dir: keep monitoring; only `config reload` needs it
        from agent.storage import describe

        service.log.error("pid file not written; `pdm-agent config reload` cannot find the agent "
                          "(send SIGHUP to its pid instead)", path=pidfile, cause=describe(exc))
    try:
        return service.run()
    finally:
        try:
            os.unlink(pidfile)
        except OSError:
            pass


def cmd_config_check(args) -> int:
    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    from agent.config_warnings import load_warnings

    for warning in load_warnings(cfg, path):  # valid, but probably not what was meant
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: OK ({len(cfg.sensors)} sensor{'s' if len(cfg.sensors) != 1 else ''}, device {cfg.device.id})")
    from agent.baseline import describe

    print("\n".join(describe(cfg, path)))  # baseline sizes, and a warning for a short one
    return EXIT_OK


def cmd_config_schema(args) -> int:
    from agent.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    print()
    return EXIT_OK


def cmd_config_edit(args) -> int:
    """visudo for config.yaml: edit a copy, validate, replace atomically, then reload the agent."""
    from agent.config import ConfigError, load_config

    path = os.path.abspath(_config_path(args))
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        command = shlex.split(editor)
        with open(path, "rb") as f:
            original = f.read()
    except ValueError as exc:
        print(f"$EDITOR/$VISUAL {editor!r} cannot be parsed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    fd, tmp = tempfile.mkstemp(prefix=".config-edit-", suffix=".yaml", dir=os.path.dirname(path))
    rejected = None  # the .rejected copy this session wrote, removed once an edit is accepted
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(original)
        while True:
            try:
                code = subprocess.call([*command, tmp])
            except OSError as exc:
                print(f"cannot run the editor {editor!r}: {exc.strerror or exc}; {path} left unchanged",
                      file=sys.stderr)
                return EXIT_USAGE
            if code != 0:
                print(f"{editor} failed; {path} left unchanged", file=sys.stderr)
                return EXIT_FAIL
            try:
                cfg = load_config(tmp)
                break
            except ConfigError as exc:
                # The errors cite the lines of a file the operator can open: the kept copy of
                # the edit (the temporary file may be edited again or gone by then).
                kept = path + ".rejected"
                shutil.copyfile(tmp, kept)
                print(str(exc).replace(tmp, kept), file=sys.stderr)
                if not sys.stdin.isatty() or input("Edit again? [Y/n] ").strip().lower() == "n":
                    print(f"{path} left unchanged; your edited copy is in {kept}", file=sys.stderr)
                    return EXIT_USAGE
                rejected = kept
        with open(tmp, "rb") as f:
            edited = f.read()
        if edited == original:
            print(f"{path}: no changes")
            return EXIT_OK
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)  # atomic: a running agent never sees a half-written file
        print(f"{path}: saved")
        if rejected and os.path.exists(rejected):
            os.unlink(rejected)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if _signal_agent(os.path.join(str(cfg.storage.dir), "pdm-agent.pid")):
        print("running agent asked to reload")
    else:
        print("no running agent found; the new config applies at next start")
    return EXIT_OK


def _signal_agent(pidfile: str) -> bool:
    """SIGHUP the agent named in its pidfile, only if that pid really is a pdm-agent (a stale
    pidfile may name an unrelated process by now)."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if b"pdm-agent" not in cmdline and b"agent.cli" not in cmdline:
            return False
        os.kill(pid, signal.SIGHUP)
        return True
    except (OSError, ValueError):
        return False


def cmd_simulate(args) -> int:
    from drivers.pty_server import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdm-agent", description="On-device predictive-maintenance agent.")
    parser.add_argument("--version", action="version", version=f"pdm-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the agent (the daemon)")
    _config_arg(p)
    p.set_defaults(func=cmd_run)

    pc = sub.add_parser("config", help="check, edit or describe the configuration")
    csub = pc.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = csub.add_parser("check", help="validate a config file; every error as path: message (FILE:LINE)")
    _config_arg(p)
    p.set_defaults(func=cmd_config_check)
    p = csub.add_parser("schema", help="print the JSON Schema of the config")
    p.set_defaults(func=cmd_config_schema)
    p = csub.add_parser("edit", help="edit in $EDITOR, validate, replace atomically, reload the agent")
    _config_arg(p)
    p.set_defaults(func=cmd_config_edit)

    from drivers.pty_server import add_arguments

    p = sub.add_parser("simulate", help="a simulated machine behind a real pseudo-terminal")
    add_arguments(p)
    p.set_defaults(func=cmd_simulate)

    from agent import replay

    p = sub.add_parser("replay", help="run recorded data (CSV or burst directory) through the pipeline")
    replay.add_arguments(p)
    p.set_defaults(func=replay.main)

    from agent import status_cmd, watch_cmd

    p = sub.add_parser("status", help="the agent's state per sensor: health, baseline, active alerts; exit 0 online")
    _config_arg(p)
    status_cmd.add_arguments(p)
    p.set_defaults(func=status_cmd.main)
    p = sub.add_parser("watch", help="print alerts (and aggregates) as they arrive, until interrupted")
    _config_arg(p)
    watch_cmd.add_arguments(p)
    p.set_defaults(func=watch_cmd.main)

    from agent.model_cli import add_parser as add_model_parser

    add_model_parser(sub)  # `model train|export|quantize|keygen|sign|verify|info`

    from agent.baseline import add_parser as add_baseline_parser

    add_baseline_parser(sub)  # `baseline reset`
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_FAIL
    except BrokenPipeError:
        # `pdm-agent config schema | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
