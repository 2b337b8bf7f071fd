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

import math
import sys

from agent.exit_codes import EXIT_FAIL, EXIT_OK, EXIT_USAGE  # noqa: E402,F401 (one definition)
# Below this many windows `config check` warns. The default detector models ~20-40 features; with
# fewer windows than features its covariance is mostly shrinkage and the short-baseline calibration
# is wide: only large changes alert (docs/BENCHMARKS.md, "Baseline lifecycle").
SENSIBLE_WINDOWS = 30


def cadence_s(sensor_cfg) -> float:
    """Seconds between two feature vectors of a sensor: its driver's poll cadence for a VALUES
    source (drivers/base.Driver.cadence_s), else one window hop at the sample rate.

    >>> from agent.config_models import parse_sensor
    >>> cadence_s(parse_sensor(name="p", protocol="sim"))
    4.096
    """
    from drivers.base import driver_for

    cadence = driver_for(sensor_cfg.protocol).cadence_s(sensor_cfg)
    if cadence is not None:
        return float(cadence)
    return (sensor_cfg.window.hop or sensor_cfg.window.size) / float(sensor_cfg.sample_rate)


def planned_windows(sensor_cfg) -> tuple[int, float]:
    """(windows the baseline will hold, seconds between windows) for a sensor's config.

    Learning ends at the first window whose end is `learn_seconds` or more after the first
    window's end, so the baseline holds the windows before it: ceil(learn_seconds / cadence).

    >>> from agent.config_models import parse_sensor
    >>> planned_windows(parse_sensor(name="p", protocol="sim", detector={"learn_seconds": 20}))
    (5, 4.096)
    """
    cadence = cadence_s(sensor_cfg)
    return max(1, math.ceil(sensor_cfg.detector.learn_seconds / cadence - 1e-9)), cadence


def _line_of(path: str, keys: tuple) -> int | None:
    """Line of the deepest of `keys` present in the YAML file (for warnings), or None."""
    import yaml

    try:
        with open(path, encoding="utf-8-sig") as f:
            node = yaml.compose(f)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def describe(cfg, path: str) -> list[str]:
    """`config check` lines about each sensor's baseline: its size, and a warning when short."""
    out = []
    for i, s in enumerate(cfg.sensors):
        if s.detector.bundle is not None:
            out.append(f"{s.name}: scored by the signed bundle {s.detector.bundle} (nothing learned on the device "
                       "unless it is refused)")
            continue
        n, cadence = planned_windows(s)
        every = (f"a poll every {cadence:g} s" if _polled(s) else
                 f"a window every {cadence:g} s: {s.window.size}-sample windows, hop {s.window.hop} at "
                 f"{s.sample_rate:g} Hz")
        out.append(f"{s.name}: baseline of {n} window{'s' if n != 1 else ''} (learn_seconds "
                   f"{s.detector.learn_seconds:g}, {every}); learned alerts from the first window "
                   f"{s.detector.learn_seconds:g} s after the first one")
        det = _detector(s.detector)
        if n < SENSIBLE_WINDOWS and det.calibration is None:  # a fixed score map needs no calibration sample
            line = _line_of(path, ("sensors", i, "detector", "learn_seconds")) or _line_of(path, ("sensors", i))
            out.append(f"warning: sensors[{i}].detector.learn_seconds: {s.name}'s baseline holds only {n} windows "
                       f"(fewer than {SENSIBLE_WINDOWS}): it is calibrated for its size, so only large changes "
                       f"alert; {math.ceil(SENSIBLE_WINDOWS * cadence)} s or more is recommended"
                       + (f" ({path}:{line})" if line else ""))
        warmup = int(det.warmup) if det.novelty else 0
        if n < warmup:
            line = _line_of(path, ("sensors", i, "detector", "learn_seconds")) or _line_of(path, ("sensors", i))
            out.append(f"warning: sensors[{i}].detector.learn_seconds: {s.name}'s detector {s.detector.type!r} "
                       f"reports nothing before its history holds warmup={warmup} records, so its first learned "
                       f"alert can come only after {math.ceil(warmup * cadence)} s, not {s.detector.learn_seconds:g} s"
                       + (f" ({path}:{line})" if line else ""))
    return out


def _detector(detector_cfg):
    """An untrained detector as configured (to read what it declares: calibration, novelty, warmup)."""
    from models.registry import create

    return create(detector_cfg.type, **dict(detector_cfg.params))


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
    from agent.config import ConfigError, default_config_path, load_config
    from agent.control import ControlUnavailable, request, socket_path

    path = args.config or default_config_path()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
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
    pb = sub.add_parser("baseline", help="the learned healthy baseline: reset it after maintenance")
    bsub = pb.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    p = bsub.add_parser("reset", help="make the running agent forget a baseline and learn anew",
                        description="Ask the running agent (over its control socket in storage.dir) to "
                                    "forget the learned baseline and learn anew. Exit 0 acknowledged, "
                                    "1 no agent running, 2 invalid usage or refused.")
    p.add_argument("--config", metavar="FILE", help="the agent's config file (default: $PDM_AGENT_CONFIG, else "
                   "/etc/pdm-agent/config.yaml, else ./config.yaml); its storage.dir holds the control socket")
    p.add_argument("--sensor", metavar="NAME", help="only this sensor (default: every sensor)")
    p.set_defaults(func=cmd_reset)


def _polled(sensor_cfg) -> bool:
    from drivers.base import VALUES, driver_for

    return driver_for(sensor_cfg.protocol).kind == VALUES
