"""``edge-fleet``: the operator's tool for keys, trust files and signed bundles.

One module per subcommand in this package, each with ``register(subparsers)`` (see
``edge_runtime.cli.main``). To add a subcommand (``publish``, ``status``, ``rollback``),
write ``converter/fleet/<name>.py`` and add its name to ``COMMANDS``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from edge_runtime.cli.main import build_parser, run_cli

COMMANDS = ("keygen", "trust", "sign", "verify", "publish", "status", "rollback")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "edge-fleet",
        "Keys, trust files and signed model bundles for a fleet of edge devices.",
        COMMANDS,
        "converter.fleet",
    )
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
