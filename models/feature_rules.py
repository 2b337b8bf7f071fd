"""The feature defaults every place that builds a feature set shares: the sensor configuration
(agent/config_models.py), the pipeline and training (models/features.FeatureSpec). One copy, so a
model trained without a config computes exactly the features a configured sensor computes.
"""

from __future__ import annotations

# Unbalance, misalignment and looseness live below 100 Hz at common speeds, gear mesh and blade
# pass in the hundreds, bearing and lubrication problems above. The top band stops at 2 kHz (the
# sensors' usual bandwidth); every band is cut at Nyquist, so a default is never an error.
DEFAULT_BANDS = ((10.0, 100.0), (100.0, 500.0), (500.0, 1000.0), (1000.0, 2000.0))


def default_bands(rate: float) -> tuple[tuple[float, float], ...]:
    """`DEFAULT_BANDS` cut at the Nyquist frequency (rate / 2, Hz); bands starting above it are dropped.

    >>> default_bands(3200.0)
    ((10.0, 100.0), (100.0, 500.0), (500.0, 1000.0), (1000.0, 1600.0))
    >>> default_bands(1000.0)
    ((10.0, 100.0), (100.0, 500.0))
    >>> default_bands(8000.0)[-1]
    (1000.0, 2000.0)
    """
    nyquist = rate / 2.0
    return tuple((lo, min(hi, nyquist)) for lo, hi in DEFAULT_BANDS if lo < nyquist)


def temperature_channels(channels) -> tuple[str, ...]:
    """The channels taken as temperatures when the configuration does not list them: those named
    ``temp`` or ``temp*`` (case-sensitive, as config.yaml documents).

    >>> temperature_channels(["ax", "temp", "temp_bearing", "Temp"])
    ('temp', 'temp_bearing')
    """
    return tuple(c for c in channels if isinstance(c, str) and c.startswith("temp"))


def default_envelope_band(rate: float) -> tuple[float, float]:
    """The upper part of the spectrum, where bearing impacts excite structural resonances.

    >>> default_envelope_band(3200.0)
    (800.0, 1440.0)
    """
    return (rate / 4.0, 0.45 * rate)


def band_name(lo: float, hi: float) -> str:
    """Feature name of a band; dots would clash with the `<channel>.<feature>` separator.

    >>> band_name(10.0, 100.0), band_name(12.5, 1600.0)
    ('band_10_100_g2', 'band_12p5_1600_g2')
    """
    return f"band_{lo:g}_{hi:g}_g2".replace(".", "p")


def _check_band(what: str, lo: float, hi: float, nyquist: float) -> None:
    if not 0.0 <= lo < hi <= nyquist:
        raise ValueError(f"{what} ({lo:g}, {hi:g}) Hz must satisfy 0 <= lo < hi <= Nyquist ({nyquist:g})")
