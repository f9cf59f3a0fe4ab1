"""``edge-runtime verify BUNDLE --trust FILE``: every check an update gets; nothing installed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="check a bundle's signatures, files, expiry, version, compatibility; install nothing",
    )
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help=".edgebundle file")
    p.add_argument(
        "--trust", type=Path, required=True, help="trust file (trusted keys and threshold)"
    )
    p.add_argument(
        "--device-class", default=None, help="check 'compatible' against this class (e.g. rpi4)"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the daemon's state folder: refuse versions not above the highest seen there",
    )
    p.add_argument("--installed-version", default=None, help="refuse versions not above this one")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # here, not at the top: every command imports this module to build the parser, and
    # the daemon should not load the signature library until an update needs it
    from edge_runtime.trust.check import check_bundle_file
    from edge_runtime.trust.summary import describe, text_lines

    result = check_bundle_file(
        args.bundle,
        args.trust,
        args.state_dir,
        args.device_class,
        installed_version=args.installed_version,
    )
    info = describe(result.verified, result.bundle)
    info["device_class_checked"] = args.device_class
    if args.json:
        print(json.dumps({"ok": True, **info}))
        return 0
    for line in text_lines(info):
        print(line)
    if args.device_class is None:
        print("compatibility not checked (no --device-class)")
    print(f"OK: {args.bundle} passed every check; nothing was installed")
    return 0
