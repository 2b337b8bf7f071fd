"""pdm-agent: on-device predictive maintenance (the daemon side)."""

__version__ = "0.1.0"
