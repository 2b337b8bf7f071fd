"""The `--config` option shared by the commands, and loading it with every error printed.

Separate from agent/cli.py so that command modules (status, watch, ...) can use it without
importing the command line that registers them.
"""

from __future__ import annotations

import argparse
import sys


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE",
        help="config file (default: $PDM_AGENT_CONFIG, else /etc/pdm-agent/config.yaml, else ./config.yaml)",
    )


def _config_path(args) -> str:
    from agent.config import default_config_path

    return args.config or default_config_path()


def _load_or_report(path: str):
    """The validated config, or None after printing every error as `key.path: message (FILE:LINE)`."""
    from agent.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
