"""``edge-runtime run --config FILE``: the long-running device daemon."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the device daemon (inference over MQTT, telemetry, outbox)",
        description="Run the device daemon with a TOML config file "
        "(see deploy_scripts/config.example.toml).",
    )
    parser.add_argument("--config", required=True, type=Path, help="daemon config file (TOML)")
    parser.add_argument(
        "--check", action="store_true", help="validate the config and exit (0 when it is valid)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.daemon.config import load_config

    config = load_config(args.config)
    if args.check:
        print(f"{args.config}: ok")
        return 0
    from edge_runtime.daemon.app import run_daemon

    return run_daemon(config, config_path=args.config, debug=bool(args.debug))
