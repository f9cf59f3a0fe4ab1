"""``edge-runtime health --config FILE``: is the daemon of this config alive and well?

For a container's health check or a probe, where no systemd watchdog watches the daemon:
exit 0 when the daemon refreshed its liveness file (in memory, where ``liveness_path``
says for the config's ``state_dir`` and this environment; refreshed with each watchdog
ping, so only while every worker is healthy) within ``--max-age`` s, else exit 1 with one
line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_runtime.cli.common import finite_float


def register(sub: Any) -> None:
    p = sub.add_parser(
        "health",
        help="exit 0 when the daemon of this config runs with every worker well",
        description="Read the liveness file of the daemon of this config (in "
        "$RUNTIME_DIRECTORY, /run/edge-runtime or /dev/shm): healthy when the "
        "daemon refreshed it (it does so only while every worker is well) within --max-age s.",
    )
    p.add_argument("--config", required=True, type=Path, help="the daemon's config file (TOML)")
    p.add_argument(
        "--max-age",
        type=finite_float,
        default=10.0,
        help="seconds since the last refresh that still count as alive (default 10)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_runtime.daemon.config import load_config
    from edge_runtime.daemon.liveness import check_liveness, liveness_path

    config = load_config(args.config)
    verdict = check_liveness(liveness_path(config.state_dir), args.max_age)
    if verdict.healthy:
        print(f"healthy: {verdict.detail}")
        return 0
    print(f"unhealthy: {verdict.detail}", file=sys.stderr)
    return 1
