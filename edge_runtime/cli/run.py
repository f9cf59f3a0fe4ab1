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
        "--check",
        action="store_true",
        help="check the config and what run needs (the model loads, state_dir is a writable "
        "folder, the trust and TLS files load) and exit: 0 when run can start",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_runtime.daemon.config import load_config

    config = load_config(args.config)
    from edge_runtime.daemon.app import load_engine, run_daemon

    if args.check:
        from edge_runtime.daemon.preflight import check_run

        for note in check_run(config, lambda path: load_engine(config, path).close()):
            print(f"{args.config}: note: {note}")
        print(f"{args.config}: ok")
        return 0

    return run_daemon(config, config_path=args.config, debug=bool(args.debug))
