"""``edge-fleet sign BUNDLE --key KEY``: add a signature to a bundle, rewritten atomically."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.bundle.reader import scan_bundle
from edge_runtime.trust.signing import sign_bundle


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sign", help="sign a bundle's manifest with a private key")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    p.add_argument(
        "--key", type=Path, required=True, help="private key file from edge-fleet keygen"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    signature = sign_bundle(args.bundle, args.key)
    meta = scan_bundle(args.bundle)
    print(
        f"signed {args.bundle} ({meta.manifest.name} {meta.manifest.version_text}) with key "
        f"{signature.keyid}; {len(meta.signatures)} signature(s) now"
    )
    return 0
