"""``edge-runtime trust-update NEW --trust FILE``: install a rotated trust file on a device.

The new file replaces the installed one only if its version is higher, it has not
expired, and it carries the signatures the rotation rule asks for (the installed
file's threshold of its keys, and its own threshold of its own keys). Otherwise the
installed file is left exactly as it was.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "trust-update",
        help="replace the device's trust file with a newer one signed under the rotation rule",
    )
    p.add_argument("new", type=Path, metavar="NEW", help="the new trust file (version N+1)")
    p.add_argument("--trust", type=Path, required=True, help="the installed trust file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edge_runtime.trust.keys import short_id  # loaded by this command alone (see verify)
    from edge_runtime.trust.trustfile import install_trust_update, load_trust

    installed = load_trust(args.trust)
    new = install_trust_update(args.trust, load_trust(args.new), now=datetime.now(timezone.utc))
    keys = ", ".join(short_id(k) for k in sorted(new.keys))
    print(
        f"{args.trust}: trust file v{installed.version} -> v{new.version}, "
        f"threshold {new.threshold}, keys {keys}"
    )
    return 0
