"""``edge-runtime``: entry point that dispatches to one module per subcommand.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``handler`` (a function of the parsed arguments returning the exit code). Errors the
project raises on purpose (``EdgeError``) end as one line on stderr and exit 1; a bad
argument exits 2 (argparse); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Callable

from edge_runtime import __version__
from edge_runtime.errors import EdgeError

#: Subcommand modules under ``edge_runtime.cli``, in the order ``--help`` lists them.
COMMANDS = ("predict", "inspect", "bench", "run", "health", "verify", "trust_update")


def build_parser(
    prog: str, description: str, commands: Sequence[str], package: str
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands:
        module = importlib.import_module(f"{package}.{name}")
        module.register(sub)
    return parser


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, run the handler, and turn project errors into one clear line."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EdgeError as exc:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        "edge-runtime",
        "Run int8 TFLite models on this device: predict, inspect, bench, the daemon, verify.",
        COMMANDS,
        "edge_runtime.cli",
    )
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
