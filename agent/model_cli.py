"""`pdm-agent model ...`: train, export, quantize, keygen, sign, verify, info (docs/models.md).

Exit codes: 0 success; 2 invalid usage, unusable input, or a bundle refused by `verify`; 1 a
runtime failure (e.g. the `train` extra is not installed). Training imports scikit-learn lazily,
inside the command, so `pdm-agent run` never pays for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from agent.exit_codes import EXIT_FAIL, EXIT_OK, EXIT_USAGE  # noqa: E402,F401 (one definition)
TRAIN_EXTRA = "this command needs the training libraries: pip install 'pdm-agent[train]'"


def _err(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _train_imports():
    try:
        import onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise SystemExit(_err(f"{TRAIN_EXTRA} ({exc.name} missing)", EXIT_FAIL)) from None


def _sensor_spec(args):
    """FeatureSpec and window of `--sensor` in `--config`, so the bundle matches that sensor."""
    from agent.config import ConfigError, load_config
    from models.features import FeatureSpec

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(_err(str(exc), EXIT_USAGE)) from None
    sensors = {s.name: s for s in cfg.sensors}
    name = args.sensor or cfg.sensors[0].name
    if name not in sensors:
        raise SystemExit(_err(f"--sensor {name!r} is not in {args.config} (sensors: {', '.join(sensors)})", EXIT_USAGE))
    s = sensors[name]
    return FeatureSpec.of_sensor(s), s.window.size, s.window.hop or s.window.size, s


def _csv_rate(path: str, rate, sensor, columns) -> float | None:
    """Raw waveform samples or records? The rule `pdm-agent replay` applies to the same CSV
    (drivers/recordings.waveform_rate), so training and replay read one file the same way."""
    from drivers.recordings import InputError, read_csv, waveform_rate

    try:
        found, why = waveform_rate(read_csv(path, columns), rate, sensor)
    except InputError as exc:
        raise SystemExit(_err(str(exc), EXIT_USAGE)) from None
    if why:
        print(f"note: {why}", file=sys.stderr)
    return found


def cmd_train(args) -> int:
    if os.path.lexists(args.out) and not args.force:
        # A signed bundle is a release: replacing it by accident would ship an unsigned model.
        return _err(f"{args.out} exists; choose another --out, or add --force to replace it", EXIT_USAGE)
    _train_imports()
    from models.training import data as training_data
    from models.training.train import report_table, train, write_bundle

    spec, window, hop, sensor = None, args.window or 4096, args.hop, None
    if args.config:
        spec, w, h, sensor = _sensor_spec(args)
        window, hop = args.window or w, args.hop or (h if not args.window else None)
    columns = args.columns.split(",") if args.columns else None
    rate = args.rate
    if os.path.isfile(args.input) and not args.input.endswith(".mat"):
        rate = _csv_rate(args.input, args.rate, sensor, columns)
        if rate is None:
            spec = None  # a CSV of records: its columns are the features
    opts = dict(spec=spec, rate=rate, columns=columns, window=window, hop=hop, decimate=args.decimate)
    try:
        dataset = training_data.load(args.input, **opts)
        faulty = None
        if args.faulty:
            fopts = {**opts, "decimate": args.faulty_decimate, "rate": args.faulty_rate or args.rate}
            if spec is None and dataset.spec is not None:
                fopts["spec"] = dataset.spec
            faulty = training_data.load(args.faulty, **fopts)
        result = train(dataset, args.detector, faulty=faulty, holdout=args.holdout, seed=args.seed,
                       version=args.version, force_variant=args.variant)
    except (training_data.DataError, ValueError) as exc:
        return _err(str(exc), EXIT_USAGE)
    path = write_bundle(result, args.out)
    print(f"trained {args.detector} on {result.manifest['training']['rows']} rows "
          f"({len(dataset.names)} features), held back {result.manifest['training']['holdout_rows']}; "
          f"faulty rows: {result.manifest['training']['faulty_source']}")
    print(report_table(result))
    print(f"rule: {result.manifest['report']['rule']}")
    print(f"chosen: {result.chosen} -> {path} (version {result.manifest['version']}, unsigned)")
    if args.key:
        return cmd_sign(argparse.Namespace(dir=path, key=args.key))
    print(f"next: pdm-agent model sign {path} --key KEY")
    return EXIT_OK


def cmd_keygen(args) -> int:
    from models.bundle import BundleError, key_id, keygen, load_public_key

    try:
        priv, pub = keygen(args.out)
    except (BundleError, OSError) as exc:
        return _err(str(exc), EXIT_USAGE)
    print(f"private key: {priv} (keep it off the gateways)\npublic key:  {pub} "
          f"(key id {key_id(load_public_key(pub))}; list it in models.trusted_keys)")
    return EXIT_OK


def cmd_sign(args) -> int:
    from models.bundle import BundleError, sign

    try:
        kid = sign(args.dir, args.key)
    except BundleError as exc:
        return _err(str(exc), EXIT_USAGE)
    print(f"signed {args.dir} with key {kid}")
    return EXIT_OK


def cmd_verify(args) -> int:
    from models.bundle import BundleError, kind, verify

    try:
        b = verify(args.dir, args.pubkey)
    except BundleError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"OK: {kind(b.manifest['name'])}@{b.version} ({b.manifest['model']['variant']}), signed by key {b.key_id}")
    return EXIT_OK


def _file_state(path: str, digest: str) -> str:
    import hashlib

    try:
        with open(path, "rb") as f:
            return "ok" if hashlib.sha256(f.read()).hexdigest() == digest else "CHANGED"
    except OSError:
        return "MISSING"


def cmd_info(args) -> int:
    from models.bundle import SIGNATURE, BundleError, kind, read_unverified

    try:
        m = read_unverified(args.dir)
    except BundleError as exc:
        return _err(str(exc), EXIT_USAGE)
    if args.json:
        json.dump(m, sys.stdout, indent=2)
        print()
        return EXIT_OK
    sig = os.path.join(args.dir, SIGNATURE)
    signed = "unsigned"
    if os.path.exists(sig):
        try:
            signed = f"signed by key {json.load(open(sig)).get('key_id', '?')} (not verified: use `model verify`)"
        except ValueError:
            signed = "signature file malformed"
    spec = m["features"].get("spec") or {}
    print(f"{kind(m['name'])}@{m['version']}  variant {m['model']['variant']}  created {m.get('created')}  {signed}")
    print(f"features: {len(m['features']['names'])}"
          + (f" from {','.join(spec['channels'])} at {spec['rate']:g} Hz, window {m['features'].get('window')}"
             if spec else " (records)"))
    t = m.get("training", {})
    print(f"trained on {t.get('source')} ({t.get('rows')} rows, {t.get('holdout_rows')} held back)")
    print(f"calibration: median {m['calibration']['median']:.4g}, tail {m['calibration']['tail']:.4g}")
    damaged = 0
    for name, digest in m["files"].items():
        state = _file_state(os.path.join(args.dir, name), digest)
        damaged += state != "ok"
        print(f"file {name}: sha256 {digest} ({state})")
    rows = m.get("report", {}).get("variants", [])
    if rows:
        print(f"{'variant':<10} {'size':>9} {'latency':>10} {'AUC':>6} {'rank r':>7}  verdict")
        for r in rows:
            print(f"{r['variant']:<10} {r['size_bytes'] / 1024:>7.1f}kB {r['latency_us']:>8.1f}us {r['auc']:>6.3f} "
                  f"{r['rank_corr']:>7.3f}  {'accepted' if r['accepted'] else 'REJECTED'}: {r['reason']}")
    if damaged:
        return _err(f"{damaged} file(s) missing or changed since the manifest was written", EXIT_USAGE)
    return EXIT_OK


def cmd_export(args) -> int:
    """Write the bundle's ONNX model to a file (verified first when --pubkey is given)."""
    from models.bundle import BundleError, read_unverified, verify

    try:
        if args.pubkey:
            data = verify(args.dir, args.pubkey).model_bytes
        else:
            m = read_unverified(args.dir)
            with open(os.path.join(args.dir, m["model"]["file"]), "rb") as f:
                data = f.read()
    except (BundleError, OSError) as exc:
        return _err(str(exc), EXIT_USAGE)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"wrote {args.out} ({len(data)} bytes; input 'x': standardised features, output 'score')")
    return EXIT_OK


def cmd_quantize(args) -> int:
    """int8-quantize a bundle's model; gate it against the original on healthy data; recalibrate."""
    _train_imports()
    import numpy as np

    from models.features import FeatureSpec
    from models import bundle as bundles
    from models.calibration import Calibrator
    from models.onnx_runtime import OnnxDetector
    from models.training import compress, data as training_data
    from models.training.train import synthetic_faults

    try:
        m = bundles.read_unverified(args.dir)
        with open(os.path.join(args.dir, m["model"]["file"]), "rb") as f:
            model = f.read()
        s = m["features"].get("spec")
        spec = None if s is None else FeatureSpec(s["rate"], tuple(s["channels"]), tuple(s["temperature_channels"]),
                                                  tuple(map(tuple, s["bands"])), tuple(s["velocity_band"]),
                                                  tuple(s["envelope_band"]))
        window = m["features"].get("window") or 4096
        ds = training_data.load(args.data, spec=spec, rate=args.rate, window=window, hop=args.hop or window,
                                columns=args.columns.split(",") if args.columns else None)
    except (bundles.BundleError, training_data.DataError, OSError, KeyError) as exc:
        return _err(str(exc), EXIT_USAGE)
    if list(ds.names) != list(m["features"]["names"]):
        return _err(f"{args.data}: its features differ from the bundle's", EXIT_USAGE)
    mean, scale = np.array(m["scaler"]["mean"]), np.array(m["scaler"]["scale"])
    z = (ds.x[np.isfinite(ds.x).all(axis=1)] - mean) / scale
    try:
        q = compress.quantize_int8(model)
    except Exception as exc:  # onnx raises its own error types for a damaged file
        return _err(f"{args.dir}: its model cannot be quantized ({str(exc).splitlines()[0]})", EXIT_USAGE)
    measured = compress.measure({"fp32": model, "int8": q}, ds.names, mean, scale, z, synthetic_faults(z))
    for r in measured:
        print(f"{r.variant:<6} {r.size_bytes / 1024:>7.1f}kB {r.latency_us:>7.1f}us AUC {r.auc:.3f} "
              f"rank r {r.rank_corr:.3f}  {r.reason}")
    if not measured[1].accepted and not args.force:
        return _err(f"int8 variant rejected by the quality gate ({measured[1].reason}); --force writes it anyway",
                    EXIT_FAIL)
    cal = Calibrator.fit(OnnxDetector(q, ds.names, mean, scale).score_batch(z))
    new = {k: v for k, v in m.items() if k not in ("files", "format")}
    new["calibration"] = cal.to_dict()
    new["model"] = {**m["model"], "variant": "int8", "params": {"from": m["model"]["variant"]}}
    new["version"] = args.version or f"{m['version']}-int8"
    bundles.write(args.out, new, {m["model"]["file"]: q})
    print(f"wrote {args.out} (version {new['version']}, unsigned)")
    return EXIT_OK


def add_parser(sub) -> None:
    """The `model` command group, attached to the main parser's subparsers."""
    pm = sub.add_parser("model", help="train, export, quantize, sign, verify and inspect model bundles")
    msub = pm.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = msub.add_parser("train", help="train a detector on healthy data and write a bundle (needs the train extra)")
    p.add_argument("input", metavar="INPUT", help="CSV file, burst directory, .mat file/directory, or sim[:SECONDS]")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--detector", default="pca", choices=("pca", "iforest", "autoencoder"),
                   help="what to train; the bundle is named bundle:<detector>@<version> (default: pca)")
    p.add_argument("--columns", metavar="A,B", help="channels (or feature columns) to use")
    p.add_argument("--rate", type=float, metavar="HZ", help="sample rate of waveform input")
    p.add_argument("--config", metavar="FILE", help="take rate, channels, bands and window from this config")
    p.add_argument("--sensor", metavar="NAME", help="which sensor of --config (default: the first)")
    p.add_argument("--window", type=int, help="samples per window (default: the sensor's, else 4096)")
    p.add_argument("--hop", type=int, help="samples between windows (default: window)")
    p.add_argument("--decimate", type=int, default=1, help="downsample waveform input by this factor first")
    p.add_argument("--faulty", metavar="INPUT", help="recording of a faulty machine for the quality measurement "
                                                     "(default: synthetic faults)")
    p.add_argument("--faulty-rate", type=float, metavar="HZ", help="sample rate of --faulty (default: --rate)")
    p.add_argument("--faulty-decimate", type=int, default=1)
    p.add_argument("--holdout", type=float, default=0.3, help="fraction held back, the latest rows (default 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", help="bundle version (default: UTC timestamp)")
    p.add_argument("--variant", choices=("fp32", "int8", "pruned", "distilled"), help="ship this variant, "
                   "overriding the selection rule")
    p.add_argument("--key", metavar="FILE", help="sign the bundle with this private key right away")
    p.set_defaults(func=cmd_train)

    p = msub.add_parser("export", help="write a bundle's ONNX model to a file")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE.onnx")
    p.add_argument("--pubkey", action="append", metavar="FILE", help="verify against this key first")
    p.set_defaults(func=cmd_export)

    p = msub.add_parser("quantize", help="int8-quantize a bundle's model, gated on healthy data (needs the train extra)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR", help="new (unsigned) bundle directory")
    p.add_argument("--data", required=True, metavar="INPUT", help="healthy recording to check and calibrate on")
    p.add_argument("--rate", type=float, metavar="HZ")
    p.add_argument("--hop", type=int)
    p.add_argument("--columns", metavar="A,B")
    p.add_argument("--version")
    p.add_argument("--force", action="store_true", help="write it even when the quality gate rejects it")
    p.set_defaults(func=cmd_quantize)

    p = msub.add_parser("keygen", help="create an Ed25519 key pair: PREFIX.key and PREFIX.pub")
    p.add_argument("--out", required=True, metavar="PREFIX")
    p.set_defaults(func=cmd_keygen)

    p = msub.add_parser("sign", help="sign a bundle with a private key")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--key", required=True, metavar="FILE")
    p.set_defaults(func=cmd_sign)

    p = msub.add_parser("verify", help="check a bundle's signature and files; exit 0 valid, 2 refused")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--pubkey", required=True, action="append", metavar="FILE", help="trusted public key (repeatable)")
    p.set_defaults(func=cmd_verify)

    p = msub.add_parser("info", help="show a bundle's manifest: model, features, training report")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    p.set_defaults(func=cmd_info)
