"""`replay --plot FILE.png`: channels, score, thresholds and alert periods in one picture.

matplotlib is an optional extra (`pip install 'pdm-agent[plot]'`) imported only here, only when
--plot is given; the daemon never imports it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

MAX_CHANNEL_PANELS = 6  # more channels share the last panel, standardized


class PlotError(Exception):
    """The picture cannot be drawn (matplotlib missing); the replay command reports it (exit 2)."""


def check_available() -> None:
    """Raise PlotError early (before a long replay) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'pdm-agent[plot]'") from None


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end] index pairs of the runs of True in mask.

    >>> _spans(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 2), (4, 4)]
    """
    m = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def plot(path: str, res) -> None:
    """Write a PNG of a replay `Result` (agent/replay.py) to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    t = [datetime.fromtimestamp(v, tz=timezone.utc) for v in res.ts.tolist()]
    channels = list(res.channels)
    shown = channels[:MAX_CHANNEL_PANELS]
    rest = channels[MAX_CHANNEL_PANELS:]
    panels = len(shown) + (1 if rest else 0) + 1
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(12, 1.6 * panels + 1), squeeze=False)
    axes = axes[:, 0]
    spans = _spans(res.alert)
    for ax, name in zip(axes, shown):
        ax.plot(t, res.values[:, channels.index(name)], lw=0.7, color="tab:blue")
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    if rest:
        ax = axes[len(shown)]
        for name in rest:
            v = res.values[:, channels.index(name)]
            ax.plot(t, (v - np.nanmean(v)) / (np.nanstd(v) or 1.0), lw=0.5, label=name)
        ax.set_ylabel("others (z)", rotation=0, ha="right", fontsize=8)
        ax.legend(fontsize=6, ncol=4, loc="upper left")
    ax = axes[-1]
    ax.plot(t, res.score, lw=0.8, color="black", label="score")
    ax.axhline(res.warning, color="orange", ls="--", lw=0.8, label=f"warning {res.warning:g}")
    ax.axhline(res.alarm, color="red", ls="--", lw=0.8, label=f"alarm {res.alarm:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("score", rotation=0, ha="right", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    for a in axes:
        for start, end in spans:
            a.axvspan(t[start], t[end], color="red", alpha=0.12, lw=0)
    axes[0].set_title(f"replay: {len(t)} records, {res.alerts} alert(s); shaded = alert active", fontsize=9)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
