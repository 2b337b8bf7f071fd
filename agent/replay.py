"""`pdm-agent replay`: run recorded data through the daemon's pipeline, offline (contract: docs/replay.md).

    pdm-agent replay INPUT --out FILE.csv [--config FILE] [--columns A,B,...] [--train-rows N]
                     [--rate HZ] [--plot FILE.png]

INPUT is a CSV of low-rate records (each row is a feature vector already and enters
`SensorPipeline.handle` directly), a CSV of raw waveform samples (--rate, a --config sensor with
`sample_rate`, or a time column stepping by <= 5 ms: windowed and featurized by the daemon's own
`SensorPipeline.process`, one record per window), or a directory of burst captures (each burst
becomes one feature vector through models/features.extract_batch, then `handle`). Everything after
the features (detector, calibration, alert policy) is the daemon's own code. Output: one row per record,
`timestamp,score,alert,level,ready,reason,diagnosis` (the fault named while in alert: docs/diagnosis.md).

Without --config the recommended defaults for the kind of input apply (`default_sensor`, documented
in config.yaml and docs/replay.md). With --config, the first sensor's detector and alerts sections
are used (and for bursts its bands and window settings; --rate overrides its sample_rate).
"""

from __future__ import annotations

import csv, os, sys, time  # noqa: E401 (keeps this file within 400 lines)
from dataclasses import dataclass

import numpy as np

from agent.diagnosis import fault_name
from agent.exit_codes import EXIT_OK, EXIT_USAGE  # one definition
from drivers.recordings import InputError, Table, list_bursts, read_burst, read_csv, waveform_rate
SENSOR = "replay"

# Recommended defaults per kind of input (config.yaml documents the same numbers).
LOW_RATE_DEFAULTS = {  # CSV with 2+ channels: transmitters reporting ~1 row/s (SKAB, Modbus polls)
    "detector": {"type": "pca", "learn_seconds": 3600, "adapt_half_life_s": 86400.0,  # LOFO on SKAB: bench/skab.py
                 "params": {"statistic": "maxz", "smooth": 3, "horizon": 5, "variance": 0.95}},
    "alerts": {"warning": 0.2, "alarm": 0.9, "debounce_n": 3, "debounce_m": 5, "hysteresis": 0.1},
}
UNIVARIATE_DEFAULTS = {  # CSV with one channel: a temperature, a pressure, a count (NAB); docs/detectors.md
    "detector": {"type": "rarity", "learn_seconds": 86400, "adapt_half_life_s": 7 * 86400.0},
    "alerts": {"warning": 0.5, "alarm": 0.9, "debounce_n": 1, "debounce_m": 1, "hysteresis": 0.1},
}
BURST_DEFAULTS = {  # burst directories (run-to-failure tests): chosen by bench/bursts.py, docs/detectors.md
    # Median of 3 bursts: one glitched burst moves neither the baseline nor the score. Two days of
    # learning cover daily load and temperature cycles. Frozen afterwards: a defect growing over days
    # would be absorbed by any adaptation that learns from scores below the warning level.
    "detector": {"type": "pca", "learn_seconds": 172800, "adapt_half_life_s": None,
                 "params": {"smooth": 3, "median": True, "log_features": True, "rate_of_change": "",
                            "variance": 0.99}},
    "alerts": {"warning": 0.5, "alarm": 0.9, "debounce_n": 3, "debounce_m": 5, "hysteresis": 0.1},
}


class ReplayError(Exception):
    """Bad arguments or configuration for a replay (exit 2)."""


@dataclass
class Result:
    """What a replay produced, per record (also what --plot draws)."""

    ts: np.ndarray
    stamps: list[str]
    channels: list[str]
    values: np.ndarray  # (n, c): CSV channels, or per-burst RMS of each burst channel
    score: np.ndarray
    alert: np.ndarray
    warning: float
    alarm: float
    alerts: int
    seconds: float
    extra: list  # per record: (policy level, ready 0/1, top reason feature, fault named while in alert or "")
    note: str = ""  # said on stderr and in the summary (e.g. the baseline never finished learning)


def default_sensor(kind: str, channels: list[str], rate: float | None = None, base=None):
    """The SensorConfig replay uses: `base` (from --config) or the recommended defaults for `kind`
    ("rows", "waveform" or "bursts"); waveform and burst channels and rate replace the base's."""
    from pydantic import ValidationError

    from agent.config import SensorConfig, parse_sensor, sensor_key_path

    try:
        if base is not None:
            if kind == "waveform":
                data = base.model_dump(include=set(SensorConfig.model_fields))  # the keys every protocol has
                keep = all(hi <= rate / 2 for _, hi in base.bands)
                temps = [c for c in base.temperature_channels if c in channels]
                data.update(name=SENSOR, protocol="sim", port=None, channels=channels, sample_rate=rate,
                            bands=data["bands"] if keep else None, temperature_channels=temps or None)
                return parse_sensor(data)
            if kind == "bursts":
                data = base.model_dump(include=set(SensorConfig.model_fields))
                # The config's bands stay only if they fit this rate; otherwise the defaults, clipped.
                keep = rate is None or all(hi <= rate / 2 for _, hi in base.bands)
                data.update(name=SENSOR, protocol="sim", port=None, channels=channels,
                            bands=data["bands"] if keep else None, temperature_channels=None,
                            sample_rate=rate or base.sample_rate)
                return parse_sensor(data)
            return base
        if kind == "bursts":
            return parse_sensor(name=SENSOR, protocol="sim", sample_rate=rate, channels=channels, **BURST_DEFAULTS)
        if kind == "waveform":  # the daemon's own defaults: windows, features, detector, alerts
            return parse_sensor(name=SENSOR, protocol="sim", sample_rate=rate, channels=channels)
        defaults = UNIVARIATE_DEFAULTS if len(channels) == 1 else LOW_RATE_DEFAULTS
        return parse_sensor(name=SENSOR, protocol="sim", **defaults)
    except ValidationError as exc:
        problems = "; ".join(f"{sensor_key_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ReplayError(f"cannot build the replay sensor for channels {channels}: {problems}") from None


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal (no dependency)."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what = total, what
        self.on = sys.stderr.isatty() and total > 2000
        self.t0 = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if not self.on or now - self.last < 0.2:
            return
        self.last = now
        frac = done / self.total
        bar = "#" * int(30 * frac)
        rate = done / max(now - self.t0, 1e-9)
        sys.stderr.write(f"\r{self.what} [{bar:<30}] {100 * frac:5.1f}% {done}/{self.total} {rate:,.0f}/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 78 + "\r")


def _run(pipeline, vectors, ts: np.ndarray, train_rows: int, progress) -> tuple[np.ndarray, np.ndarray, list]:
    """Feed FeatureVectors to `pipeline.handle`; the first `train_rows` are the baseline."""
    n = len(ts)
    score = np.zeros(n)
    alert = np.zeros(n, dtype=np.int8)
    extra = []
    policy = pipeline.policy
    for i, vector in enumerate(vectors):
        s = pipeline.handle(vector)
        score[i] = s.value
        alert[i] = policy.active
        extra.append((policy.level, int(s.ready), s.reason[0][0] if s.reason else "", fault_name(pipeline, ts[i])))
        if i % 256 == 0:
            progress(i)
    return score, alert, extra


def _prepare(pipeline, ts: np.ndarray, train_rows: int) -> None:
    """With --train-rows N the baseline is exactly the first N records (StreamingModel
    `baseline_rows`) and it is not adapted afterwards (the benchmark protocols: learn on the head,
    score the rest); its phase length, which places the cold start, is their span (just over it,
    as the replay figures were measured). 0 keeps the daemon's model."""
    if train_rows:
        from agent.pipeline import build_model

        span = float(ts[train_rows - 1] - ts[0])
        pipeline.model = build_model(pipeline.cfg.detector, pipeline.cfg.alerts, baseline_rows=train_rows,
                                     learn_seconds=span * (1 + 1e-9) + 1e-6, adapt_half_life_s=None)


def replay_table(table: Table, sensor_cfg, train_rows: int = 0) -> Result:
    """Replay a CSV's records (rows are feature vectors) through the daemon's pipeline."""
    from agent.pipeline import SensorPipeline
    from agent.records import FeatureVector

    alerts = []
    pipeline = SensorPipeline(device="replay", sensor_cfg=sensor_cfg, aggregate_interval=1e12, emit=alerts.append)
    _prepare(pipeline, table.ts, train_rows)
    names = table.columns
    rows = table.values.tolist()
    vectors = (FeatureVector(SENSOR, t, dict(zip(names, r))) for t, r in zip(table.ts.tolist(), rows))
    progress = _Progress(len(rows), "replay")
    t0 = time.perf_counter()
    score, alert, extra = _run(pipeline, vectors, table.ts, train_rows, progress)
    progress.close()
    return _result(table.ts, table.stamps, names, table.values, score, alert, extra, sensor_cfg, alerts, t0)


def replay_bursts(directory: str, rate: float, sensor_cfg_for, columns: list[str] | None,
                  train_rows: int = 0) -> Result:
    """Replay a directory of bursts: each burst -> waveform features (vectorized) -> handle()."""
    from models.features import extract_batch, feature_names
    from agent.pipeline import SensorPipeline
    from agent.records import FeatureVector, iso_utc

    files = list_bursts(directory)
    first = read_burst(files[0][1])
    width = first.shape[1]
    if columns:
        if len(columns) != width:
            raise InputError(f"{files[0][1]}: {width} columns, --columns names {len(columns)}")
        channels = list(columns)
    else:
        channels = [f"ch{k + 1}" for k in range(width)]
    sensor_cfg = sensor_cfg_for(channels)
    alerts = []
    pipeline = SensorPipeline(device="replay", sensor_cfg=sensor_cfg, aggregate_interval=1e12, emit=alerts.append)
    spec, names = pipeline.spec, feature_names(pipeline.spec)
    ts = np.array([t for t, _ in files])
    _prepare(pipeline, ts, train_rows)
    progress = _Progress(len(files), "replay")
    rms_cols = [names.index(f"{c}.rms_g") if f"{c}.rms_g" in names else names.index(f"{c}.mean_c")
                for c in channels]
    shown = np.zeros((len(files), width))
    t0 = time.perf_counter()

    def vectors():
        batch = 32  # bursts per extract_batch call: vectorized, memory bounded
        for start in range(0, len(files), batch):
            chunk = [first if k == 0 else read_burst(files[k][1]) for k in range(start, min(start + batch, len(files)))]
            for k, b in enumerate(chunk):
                if b.shape[1] != width:
                    raise InputError(f"{files[start + k][1]}: {b.shape[1]} columns, the first burst has {width}")
            if min(len(b) for b in chunk) < 64:
                bad = next(start + k for k, b in enumerate(chunk) if len(b) < 64)
                raise InputError(f"{files[bad][1]}: {len(chunk[bad - start])} samples; a burst needs at least 64")
            groups: dict[int, list[int]] = {}
            for k, b in enumerate(chunk):
                groups.setdefault(len(b), []).append(k)
            feats = np.empty((len(chunk), len(names)))
            for idx in groups.values():
                feats[idx] = extract_batch(np.stack([chunk[k] for k in idx]), spec)
            for k in range(len(chunk)):
                shown[start + k] = feats[k, rms_cols]
                pipeline.diagnosis.keep(chunk[k])  # the burst a record in alert is diagnosed on
                yield FeatureVector(SENSOR, float(ts[start + k]), dict(zip(names, feats[k].tolist())))

    score, alert, extra = _run(pipeline, vectors(), ts, train_rows, progress)
    progress.close()
    stamps = [iso_utc(t) for t in ts]
    return _result(ts, stamps, channels, shown, score, alert, extra, sensor_cfg, alerts, t0)


def replay_waveform(table: Table, rate: float, sensor_cfg, train_rows: int = 0) -> Result:
    """Replay a CSV of raw samples as the daemon runs a serial sensor: agent/windowing.Windower cuts
    `sensor_cfg.window` windows (models/features.extract), one output record per window, dated and
    stamped at its last sample. Frames are fed one hop at a time so --train-rows N ends learning
    exactly after window N."""
    from agent.pipeline import SensorPipeline
    from agent.records import Frame

    alerts = []
    pipeline = SensorPipeline(device="replay", sensor_cfg=sensor_cfg, aggregate_interval=1e12, emit=alerts.append)
    size, hop, n = pipeline.size, pipeline.hop, len(table.values)
    if n < size:
        raise ReplayError(f"{table.path}: {n} samples at {rate:g} Hz, fewer than one window "
                          f"({size} samples, window.size)")
    ts = table.ts if table.time_column is not None else np.arange(n) / rate
    ends = np.arange(size, n + 1, hop)  # sample count at the end of each window
    if train_rows > len(ends):
        raise ReplayError(f"--train-rows {train_rows}: {table.path} has only {len(ends)} windows "
                          f"of {size} samples (hop {hop})")
    win_ts = ts[ends - 1]
    _prepare(pipeline, win_ts, train_rows)
    temps = np.isin(table.columns, sensor_cfg.temperature_channels)
    shown = np.empty((len(ends), len(table.columns)))
    score, alert, extra = np.zeros(len(ends)), np.zeros(len(ends), dtype=np.int8), []
    progress = _Progress(len(ends), "replay")
    policy, channels = pipeline.policy, tuple(table.columns)
    t0 = time.perf_counter()
    start = 0
    for j, end in enumerate(ends.tolist()):
        (s,) = pipeline.process(Frame(SENSOR, float(ts[end - 1]), channels, table.values[start:end]))
        start = end
        window = table.values[end - size:end]
        shown[j] = np.where(temps, window.mean(axis=0), window.std(axis=0))
        score[j], alert[j] = s.value, policy.active
        extra.append((policy.level, int(s.ready), s.reason[0][0] if s.reason else "", fault_name(pipeline, win_ts[j])))
        if j % 64 == 0:
            progress(j)
    progress.close()
    numeric = table.time_column is None or _is_number(table.stamps[0])
    stamps = [f"{t:.6f}" for t in win_ts] if numeric else [table.stamps[e - 1] for e in ends]
    return _result(win_ts, stamps, table.columns, shown, score, alert, extra, sensor_cfg, alerts, t0)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _result(ts, stamps, channels, values, score, alert, extra, sensor_cfg, alerts, t0) -> Result:
    raised = sum(1 for a in alerts if getattr(a, "level", None) in ("warning", "alarm"))
    note = ""
    if not any(e[1] for e in extra):  # "0 alerts" would read as "healthy": say why nothing was scored
        span, learn = float(ts[-1] - ts[0]), sensor_cfg.detector.learn_seconds
        note = (f"the baseline was still learning at the last record: the input spans {span:g} s, "
                f"detector.learn_seconds is {learn:g} s; nothing was scored. Use --train-rows N (the first "
                "N records are the baseline) or a --config with a shorter detector.learn_seconds"
                if span < learn else f"all {len(extra)} records were the baseline; nothing was scored")
    return Result(ts, stamps, channels, values, score, alert, sensor_cfg.alerts.warning, sensor_cfg.alerts.alarm,
                  raised, time.perf_counter() - t0, extra, note)


def write_csv(path: str, res: Result) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "score", "alert", "level", "ready", "reason", "diagnosis"])
        for stamp, s, a, (level, ready, reason, *fault) in zip(res.stamps, res.score.tolist(), res.alert.tolist(), res.extra):
            w.writerow([stamp, f"{s:.9f}", a, level, ready, reason, fault[0] if fault else ""])
    os.replace(tmp, path)


def load_base_sensor(path: str | None):
    """The first sensor of --config, or None (recommended defaults)."""
    if not path:
        return None
    from agent.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise ReplayError(str(exc)) from None
    return cfg.sensors[0]


def replay(input_path: str, *, config: str | None = None, columns: list[str] | None = None,
           train_rows: int = 0, rate: float | None = None) -> Result:
    """Replay a CSV file or a burst directory; raises InputError / ReplayError on bad input."""
    if train_rows < 0:
        raise ReplayError("--train-rows must be >= 0")
    base = load_base_sensor(config)
    if os.path.isdir(input_path):
        rate = rate or (base.sample_rate if base is not None else None)
        if not rate or rate <= 0:
            raise ReplayError("a burst directory needs --rate HZ (samples per second)")
        n = len(list_bursts(input_path))
        if train_rows > n:
            raise ReplayError(f"--train-rows {train_rows}: {input_path} has only {n} bursts")
        return replay_bursts(input_path, rate, lambda ch: default_sensor("bursts", ch, rate, base), columns, train_rows)
    if not os.path.exists(input_path):
        raise InputError(f"{input_path}: no such file or directory")
    table = read_csv(input_path, columns)
    wave_rate, why = waveform_rate(table, rate, base)
    if wave_rate is not None:
        res = replay_waveform(table, wave_rate, default_sensor("waveform", table.columns, wave_rate, base),
                              train_rows)
        res.note = "; ".join(filter(None, [why, res.note]))
        return res
    if train_rows > len(table.ts):
        raise ReplayError(f"--train-rows {train_rows}: {input_path} has only {len(table.ts)} records")
    return replay_table(table, default_sensor("rows", table.columns, base=base), train_rows)


def add_arguments(p) -> None:
    p.add_argument("input", metavar="INPUT", help="a CSV file of records, or a directory of burst files")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="output: timestamp,score,alert,...")
    p.add_argument("--config", metavar="FILE", help="use the first sensor's detector and alert settings "
                   "(default: the recommended settings for this kind of input)")
    p.add_argument("--columns", metavar="A,B,...", help="CSV: the channel columns (default: every numeric "
                   "column but the timestamp and labels); bursts: names of the file's columns")
    p.add_argument("--train-rows", type=int, default=0, metavar="N",
                   help="the first N records are the healthy baseline; 0 = learn online as the daemon does")
    p.add_argument("--rate", type=float, metavar="HZ", help="samples per second: of bursts, or of a CSV of raw "
                   "waveform samples (a CSV whose time column steps by <= 5 ms is one without --rate)")
    p.add_argument("--plot", metavar="FILE.png", help="draw channels, score, thresholds and alerts (matplotlib)")


def main(args) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if os.path.exists(args.out) and os.path.exists(args.input) and os.path.samefile(args.out, args.input):
        print(f"pdm-agent replay: error: --out {args.out} is the input; choose another file", file=sys.stderr)
        return EXIT_USAGE
    from agent.plot import PlotError  # light: matplotlib is imported only when drawing

    try:
        if args.plot:
            from agent.plot import check_available

            check_available()
        res = replay(args.input, config=args.config, columns=columns, train_rows=args.train_rows, rate=args.rate)
        write_csv(args.out, res)
        if args.plot:
            from agent.plot import plot

            plot(args.plot, res)
    except (InputError, ReplayError, PlotError) as exc:
        print(f"pdm-agent replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"pdm-agent replay: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    n = len(res.ts)
    if res.note:
        print(f"pdm-agent replay: note: {res.note}", file=sys.stderr)
    scored = sum(e[1] for e in res.extra)
    outcome = (f"{scored} scored, {res.alerts} alert(s), {int(res.alert.sum())} records in alert" if scored
               else "none scored (see the note above)")
    print(f"replay: {n} records in {res.seconds:.2f} s ({n / max(res.seconds, 1e-9):,.0f} records/s), "
          f"{outcome} -> {args.out}", file=sys.stderr)
    return EXIT_OK
