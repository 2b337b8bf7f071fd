"""Resetting a learned baseline: the agent's side and `pdm-agent baseline reset`.

After maintenance (a bearing change, a new operating point) the baseline learned before is wrong.
`pdm-agent baseline reset [--config FILE] [--sensor NAME]` asks the running agent, over its local
control socket (agent/control.py: a unix socket in storage.dir, mode 0600, service user and root
only), to forget that sensor's baseline, or every sensor's, and learn anew from the next window;
the retained status shows `learning` at once. The saved baseline file is overwritten, so a restart
does not bring the old one back.

Exit codes: 0 the agent acknowledged, 1 no agent answers (not running, or another storage.dir),
2 invalid usage or configuration, or the agent refused (an unknown sensor, a sensor that runs a
signed bundle).
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def handle_request(req: dict, workers: dict, storage_dir: str) -> dict:
    """The agent's answer to a control request (runs on the control thread): for
    {"command": "baseline-reset", "sensor": NAME | None}, resets between two windows under
    each worker's lock and saves the fresh state."""
    if req.get("command") != "baseline-reset":
        return {"ok": False, "error": f"unknown command {req.get('command')!r}"}
    name = req.get("sensor")
    if name is not None and name not in workers:
        return {"ok": False, "error": f"no running sensor named {name!r}; running: {', '.join(workers) or 'none'}"}
    done, refused = [], []
    for sensor, worker in list(workers.items()):
        if name is not None and sensor != name:
            continue
        if not worker.lock.acquire(timeout=10.0):
            refused.append(f"{sensor}: pipeline busy, try again")
            continue
        try:
            if worker.pipeline.reset_baseline():
                worker.pipeline.save_state(storage_dir)  # the old baseline is gone, also after a restart
                done.append(sensor)
            else:
                refused.append(f"{sensor}: runs a signed model bundle, nothing learned on the device to reset")
        finally:
            worker.lock.release()
    if not done:
        return {"ok": False, "error": "; ".join(refused) or "no sensor to reset"}
    return {"ok": True, "sensors": done, **({"refused": refused} if refused else {})}


def cmd_reset(args) -> int:
    from agent.cli import _config_path, _load_or_report
    from agent.control import ControlUnavailable, request, socket_path

    path = _config_path(args)
    cfg = _load_or_report(path)
    if cfg is None:
        return EXIT_USAGE
    if args.sensor is not None and args.sensor not in [s.name for s in cfg.sensors]:
        print(f"--sensor {args.sensor}: not a sensor of {path} (sensors: {', '.join(s.name for s in cfg.sensors)})",
              file=sys.stderr)
        return EXIT_USAGE
    sock = socket_path(str(cfg.storage.dir))
    try:
        reply = request(sock, {"command": "baseline-reset", "sensor": args.sensor})
    except ControlUnavailable as exc:
        print(f"no running agent answers for {path}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if not reply.get("ok"):
        print(f"the agent refused: {reply.get('error')}", file=sys.stderr)
        return EXIT_USAGE
    for note in reply.get("refused", []):
        print(f"not reset: {note}", file=sys.stderr)
    print(f"baseline reset: {', '.join(reply['sensors'])} learning anew "
          f"(see `learn_seconds` in {path}; progress in the status topic)")
    return EXIT_OK


def add_parser(sub) -> None:
    """`pdm-agent baseline reset` under the CLI's subcommands."""
    from agent.cli import _config_arg

    pb = sub.add_parser("baseline", help="the learned healthy baseline: reset it after maintenance")
    bsub = pb.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    p = bsub.add_parser("reset", help="make the running agent forget a baseline and learn anew",
                        description="Ask the running agent (over its control socket in storage.dir) to "
                                    "forget the learned baseline and learn anew. Exit 0 acknowledged, "
                                    "1 no agent running, 2 invalid usage or refused.")
    _config_arg(p)
    p.add_argument("--sensor", metavar="NAME", help="only this sensor (default: every sensor)")
    p.set_defaults(func=cmd_reset)
