"""``edge-fleet verify BUNDLE --trust FILE``: who signed a bundle and what it holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_runtime.bundle.reader import scan_bundle
from edge_runtime.errors import SignatureError
from edge_runtime.trust.check import check_bundle_file
from edge_runtime.trust.summary import describe, text_lines


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("verify", help="check a bundle against a trust file and show its contents")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument("--trust", type=Path, required=True, help="the trust file the devices hold")
    p.add_argument("--device-class", default=None, help="also check 'compatible' for this class")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        result = check_bundle_file(args.bundle, args.trust, None, args.device_class)
    except SignatureError as exc:
        if scan_bundle(args.bundle).signatures:
            raise
        raise SignatureError(
            f"{exc}; sign it first: edge-fleet sign {args.bundle} --key KEY"
        ) from exc
    info = describe(result.verified, result.bundle)
    if args.json:
        print(json.dumps({"ok": True, **info}))
        return 0
    for line in text_lines(info):
        print(line)
    print(f"OK: signatures, files and expiry check out against {args.trust}")
    return 0
