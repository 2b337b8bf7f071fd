"""`pdm-agent fleet merge`: pool the baselines agents shared into one signed fleet prior.

    pdm-agent fleet merge --config FILE [--machine-type T] --out DIR --key KEY      (from the broker)
    pdm-agent fleet merge SHARE.json ... --machine-type T --out DIR --key KEY      (from files)
    pdm-agent fleet bounds REFERENCE_SHARE.json [--k 6]       (fleet.privacy.bounds, docs/federated.md)

From the broker it reads the retained shares on `<prefix>/fleet/<T>/baseline/+/+` (the broker
settings and, unless --machine-type, the machine type come from --config). The prior is exact
pooled statistics (models/pooling.py), written as a bundle (models/bundle.py) whose model file is
`prior.json`, and signed with --key (an Ed25519 key from `pdm-agent model keygen`). Exit 0 written,
2 invalid usage or a share refused (the reason printed), 1 no broker or too few shares.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _err(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _from_files(paths: list[str]) -> list[tuple[str, dict]]:
    shares = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if not text.strip():
                # what `mosquitto_sub -C 1 -W 5 > FILE` leaves when nothing is retained on the topic
                raise SystemExit(_err(f"{path}: empty: no share in it (nothing retained on the topic it was "
                                      "saved from? check the device and sensor in the topic)", EXIT_USAGE))
            shares.append((path, json.loads(text)))
        except OSError as exc:
            raise SystemExit(_err(f"{path}: {exc.strerror or exc}", EXIT_USAGE)) from None
        except ValueError as exc:
            raise SystemExit(_err(f"{path}: not JSON ({exc})", EXIT_USAGE)) from None
    return shares


def _from_broker(cfg, config_path: str, machine_type: str, wait_s: float) -> list[tuple[str, dict]]:
    """The retained shares of `machine_type`: collected until none arrived for 1 s (or wait_s)."""
    from agent.topics import fleet_baseline as topic
    from agent.mqtt_client import BrokerError, Subscription

    pattern = topic(cfg.mqtt.topic_prefix, machine_type, "+", "+")
    got: dict[str, bytes] = {}
    last = [time.monotonic()]
    lock = threading.Lock()

    def on_message(t, payload, retain):
        with lock:
            if payload:  # an empty retained message clears a share
                got[t] = payload
            last[0] = time.monotonic()

    sub = Subscription(cfg.mqtt, [pattern], on_message, role="fleet", config_path=config_path)
    try:
        sub.start()
        sub.wait_subscribed(min(10.0, wait_s))
        with lock:
            last[0] = time.monotonic()  # retained shares arrive right after the SUBACK
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and time.monotonic() - last[0] < 1.0:
            time.sleep(0.1)
    except BrokerError as exc:
        raise SystemExit(_err(str(exc), EXIT_FAIL)) from None
    finally:
        sub.close()
    shares = []
    for t, payload in sorted(got.items()):
        try:
            shares.append((t, json.loads(payload)))
        except ValueError:
            print(f"skipped {t}: not JSON", file=sys.stderr)
    print(f"read {len(shares)} share(s) from {sub.where} on {pattern}")
    return shares


def write_prior(doc: dict, out: str) -> str:
    """Write the prior as an (unsigned) bundle directory; returns its path."""
    from agent import __version__
    from agent.fleet_share import PRIOR_FILE
    from models import bundle

    det = doc["detector"]
    manifest = {
        "name": f"fleet-prior-{doc['machine_type']}", "version": doc["created"].replace("-", "").replace(":", ""),
        "created": doc["created"], "model": {"file": PRIOR_FILE, "kind": "fleet-prior", "variant": "fleet-prior"},
        "features": {"names": det["keys"]}, "scaler": None, "calibration": doc["calibration"],
        "training": {"source": f"{len(doc['machines'])} shared baselines of machine type {doc['machine_type']}",
                     "rows": det["n"], "holdout_rows": 0, "machines": doc["machines"],
                     "tool": f"pdm-agent {__version__} fleet merge"},
    }
    data = json.dumps(doc, indent=1).encode()
    return bundle.write(out, manifest, {PRIOR_FILE: data})


def cmd_merge(args) -> int:
    from agent.cli_config import _load_or_report
    from agent.fleet_share import merge
    from models.bundle import BundleError, load_private_key, sign
    from models.pooling import PoolingError

    from models.pooling import MEDIAN_RATIO

    if args.tail_ratio is not None and not (math.isfinite(args.tail_ratio) and args.tail_ratio > MEDIAN_RATIO):
        return _err(f"--tail-ratio must be a finite number above {MEDIAN_RATIO} (a healthy baseline's median score "
                    f"over its mean; the tail lies above the median), got {args.tail_ratio:g}", EXIT_USAGE)
    if os.path.lexists(args.out) and not args.force:
        return _err(f"{args.out} exists; choose another --out, or add --force to replace it", EXIT_USAGE)
    if args.key:
        try:  # before anything is written: a bad key must not leave an unsigned prior at --out
            load_private_key(args.key)
        except BundleError as exc:
            return _err(f"--key: {exc}; nothing written", EXIT_USAGE)
    machine_type = args.machine_type
    if args.shares:
        shares = _from_files(args.shares)
    else:
        if not args.config:
            return _err("give share files, or --config FILE to read the shares from its broker", EXIT_USAGE)
        cfg = _load_or_report(args.config)
        if cfg is None:
            return EXIT_USAGE
        machine_type = machine_type or cfg.fleet.machine_type
        if machine_type is None:
            return _err(f"--machine-type: not given, and {args.config} has no fleet.machine_type", EXIT_USAGE)
        shares = _from_broker(cfg, args.config, machine_type, args.wait)
    if len(shares) < args.min_machines:
        return _err(f"{len(shares)} share(s) found, --min-machines is {args.min_machines}: a prior of too few "
                    "machines knows too little of how alike machines differ", EXIT_FAIL)
    try:
        doc = merge(shares, machine_type, tail_ratio=args.tail_ratio)
    except PoolingError as exc:
        return _err(f"refused: {exc}", EXIT_USAGE)
    if args.force and os.path.isdir(args.out):
        import shutil

        shutil.rmtree(args.out)  # a stale file left inside would make the bundle refuse to verify
    path = write_prior(doc, args.out)
    for m in doc["machines"]:
        print(f"  {m['device']}/{m['sensor']}: {m['n']} windows")
    cal = doc["calibration"]
    if doc["privacy"]:
        eps = sorted({s["epsilon"] for s in doc["privacy"]["shares"]})
        print(f"private shares (epsilon {', '.join(f'{e:g}' for e in eps)} per window): calibration from the "
              f"noised statistics, tail {cal['tail_ratio']:g} x expected score (--tail-ratio)")
    elif args.tail_ratio is not None:
        print("note: --tail-ratio applies to private shares only; these are exact and carry their calibration")
    print(f"pooled {doc['detector']['n']} windows of {len(doc['machines'])} machine(s), machine type "
          f"{doc['machine_type']!r}, {len(doc['detector']['keys'])} features; calibration median "
          f"{cal['median']:.4g}, tail {cal['tail']:.4g} -> {path}")
    if not args.key:
        print(f"unsigned; next: pdm-agent model sign {path} --key KEY (agents refuse an unsigned prior)")
        return EXIT_OK
    try:
        kid = sign(path, args.key)
    except BundleError as exc:
        return _err(str(exc), EXIT_USAGE)
    print(f"signed with key {kid}; on the new machine: fleet.prior: {os.path.abspath(path)}")
    return EXIT_OK


def add_parser(sub) -> None:
    """`pdm-agent fleet merge` under the CLI's subcommands."""
    pf = sub.add_parser("fleet", help="federated baselines: merge shared baselines into a prior; privacy bounds")
    fsub = pf.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    p = fsub.add_parser("merge", help="pool shared baselines into one signed fleet prior",
                        description="Pool the baselines agents shared (fleet.share_baseline) into one fleet prior: "
                                    "exact count-weighted statistics, written as a bundle and signed. Exit 0 "
                                    "written, 1 no broker or too few shares, 2 invalid usage or a share refused.")
    p.add_argument("shares", nargs="*", metavar="SHARE.json", help="share files (default: read from the broker)")
    p.add_argument("--config", metavar="FILE", help="an agent config: its broker, topic prefix and fleet.machine_type")
    p.add_argument("--machine-type", metavar="TYPE", help="the group to merge (default: the config's fleet.machine_type)")
    p.add_argument("--out", required=True, metavar="DIR", help="the prior bundle directory to write")
    p.add_argument("--key", metavar="FILE", help="Ed25519 private key to sign with (pdm-agent model keygen)")
    p.add_argument("--min-machines", type=int, default=2, metavar="N",
                   help="refuse with fewer shares than this (default 2)")
    p.add_argument("--wait", type=float, default=5.0, metavar="S",
                   help="at most this long reading retained shares from the broker (default 5)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--tail-ratio", type=float, default=None, metavar="R",
                   help="private shares only: the prior's tail = R x the expected healthy score (default 3.0; "
                        "`fleet bounds` measures it on a reference machine)")
    p.set_defaults(func=cmd_merge)
    b = fsub.add_parser("bounds", help="fleet.privacy bounds from a reference machine's exact share",
                        description="Print fleet.privacy.bounds (mean -/+ K standard deviations of each feature) "
                                    "and the tail ratio for `fleet merge --tail-ratio`, from the exact share of a "
                                    "machine that does not share privately (a test bench, a spare). Exit 0, 2 on "
                                    "an unreadable share.")
    b.add_argument("share", metavar="SHARE.json", help="an exact share (fleet.share_baseline without privacy)")
    b.add_argument("--k", type=float, default=6.0, help="standard deviations each side (default 6)")
    b.set_defaults(func=cmd_bounds)


def cmd_bounds(args) -> int:
    """`fleet bounds`: YAML for fleet.privacy.bounds from a reference share (module docstring)."""
    import numpy as np

    from agent.fleet_share import read_share
    from models.gaussian import is_log_feature, variance_floor
    from models.pooling import PoolingError, expected_score
    from models.private_stats import bounds_from

    if not (args.k > 0 and math.isfinite(args.k)):
        return _err(f"--k must be a finite number above 0, got {args.k:g}", EXIT_USAGE)
    (where, doc), = _from_files([args.share])
    try:
        stats, cal, doc = read_share(doc, where)
    except PoolingError as exc:
        return _err(str(exc), EXIT_USAGE)
    if doc.get("privacy") is not None:
        return _err(f"{where}: a private share; bounds come from an exact one (a machine that does not share "
                    "privately), noised statistics would give noised bounds", EXIT_USAGE)
    log_mask = np.array([is_log_feature(k) for k in stats.keys])
    try:
        bounds = bounds_from(stats.keys, stats.mean, stats.cov, log_mask, args.k, variance_floor(stats.mean, log_mask))
    except OverflowError:
        return _err(f"--k {args.k:g} is too large: a log feature's bound overflows (the default is 6)", EXIT_USAGE)
    # fleet.privacy refuses bounds that are not finite, low >= high, or a log feature's low of 0:
    # say which --k gave them rather than print YAML the agent refuses.
    bad = [k for k, (low, high) in bounds.items() if not (math.isfinite(low) and math.isfinite(high) and low < high)
           or (k in stats.keys and log_mask[stats.keys.index(k)] and low <= 0)]
    if bad:
        return _err(f"--k {args.k:g} gives bounds fleet.privacy cannot use for {', '.join(bad[:6])} (not finite, "
                    "empty after rounding to 4 digits, or a log feature's low bound of 0); the default is 6",
                    EXIT_USAGE)
    own = expected_score(stats, stats)[0]
    print(f"# fleet.privacy.bounds from {where} ({doc.get('device')}/{doc.get('sensor')}, {stats.n} windows): "
          f"mean -/+ {args.k:g} sd")
    print("bounds:")
    for name, (low, high) in bounds.items():
        print(f"  {name}: [{low:g}, {high:g}]")
    if own > 0:
        print(f"# its tail ratio (99.9 % tail / expected score): {cal['tail'] / own:.2f} -> "
              f"pdm-agent fleet merge ... --tail-ratio {cal['tail'] / own:.2f}")
    return EXIT_OK
