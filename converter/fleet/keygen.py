"""``edge-fleet keygen --out DIR [--name NAME]``: a new Ed25519 signing key pair."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from edge_runtime.errors import ConfigError
from edge_runtime.trust.keys import generate_signing_key, write_key_pair

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keygen", help="make an Ed25519 key pair (private key file 0600)")
    p.add_argument("--out", type=Path, required=True, help="folder for NAME.key and NAME.pub")
    p.add_argument("--name", default="signing", help="file name stem (default: signing)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not _NAME.match(args.name):
        raise ConfigError(f"--name must be letters, digits, '.', '_' or '-', got {args.name!r}")
    key = generate_signing_key()
    private_path, public_path = write_key_pair(args.out, args.name, key)
    if args.json:
        print(
            json.dumps(
                {
                    "keyid": key.keyid,
                    "private_key": str(private_path),
                    "public_key": str(public_path),
                }
            )
        )
        return 0
    print(f"key id:      {key.keyid}")
    print(f"private key: {private_path} (mode 0600; keep it secret, never copy it to devices)")
    print(f"public key:  {public_path} (add it to the trust file: edge-fleet trust init/add-key)")
    return 0
