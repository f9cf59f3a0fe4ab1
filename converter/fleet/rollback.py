"""``edge-fleet rollback --host H --device ID --key KEY... [--version V] [--expires T]``:
send a device a signed order to go back to its previous model version; ``--wait``
follows its events until it reports the result.

The order (device id, target version, expiry, a fresh nonce) is signed with each
``--key``; the device carries it out only with the trust file's threshold of valid
signatures, before it expires, once, and when it names this device (see
``edge_runtime.trust.orders``). The unsigned order of earlier versions is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from converter.fleet.broker import Session, add_broker_arguments
from edge_runtime.bundle.canonical import parse_utc
from edge_runtime.errors import BundleError, ConfigError, UpdateError

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rollback", help="make a device serve its previous model version")
    add_broker_arguments(p)
    p.add_argument("--device", required=True)
    p.add_argument(
        "--key",
        required=True,
        type=Path,
        action="extend",
        nargs="+",
        metavar="KEY",
        help="private key file(s) to sign the order with (the trust file's threshold of them)",
    )
    p.add_argument("--version", default=None, help="the version expected back (default: any)")
    p.add_argument(
        "--expires",
        default="15m",
        help="how long the order stays valid (30s, 15m, 2h, 1d) or a UTC time (default 15m)",
    )
    p.add_argument("--trust", type=Path, default=None, help="check the signatures against this")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the result")
    p.set_defaults(handler=run)


def expiry(text: str, now: datetime) -> datetime:
    """``--expires``: a duration from ``now`` or a UTC time.

    Raises:
        ConfigError: neither, or not in the future.
    """
    match = _DURATION.match(text)
    if match:
        moment = now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            moment = parse_utc(text, "--expires")
        except BundleError as exc:
            raise ConfigError(f"{exc}; or give a duration such as 15m") from exc
    if moment <= now:
        raise ConfigError(f"--expires {text}: the order would have expired already")
    return moment


def run(args: argparse.Namespace) -> int:
    from edge_runtime.trust.keys import load_signing_key
    from edge_runtime.trust.orders import RollbackOrder, sign_order, verify_order
    from edge_runtime.trust.trustfile import load_trust

    now = datetime.now(timezone.utc)
    order = RollbackOrder(
        args.device, args.version, expiry(args.expires, now), secrets.token_hex(16)
    )
    payload = json.dumps(sign_order(order, [load_signing_key(k) for k in args.key])).encode()
    if args.trust is not None:  # refused here rather than by the device
        verify_order(payload, load_trust(args.trust), device_id=args.device, now=now)
    events = f"{args.prefix}/{args.device}/model/events"
    session = Session(args, [events] if args.wait > 0 else [])
    try:
        session.publish(f"{args.prefix}/{args.device}/model/rollback", payload)
        print(f"sent {args.device} a signed rollback order (nonce {order.nonce[:8]})")
        if args.wait <= 0:
            return 0

        def answered(heard: list[tuple[str, bytes]]) -> bool:
            return any(_result(p) is not None for t, p in heard if t == events)

        if not session.wait(answered, args.wait):
            raise UpdateError(f"no answer from {args.device} within {args.wait:g} s")
        doc = next(d for t, p in session.heard if t == events and (d := _result(p)) is not None)
    finally:
        session.close()
    print(f"  {doc['stage']}: {doc.get('detail') or doc.get('reason')}")
    return 0 if doc["stage"] == "rolled_back" else 1


def _result(payload: bytes) -> dict[str, object] | None:
    """The event that answers a rollback order: done, failed, or the order refused."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    reason = doc.get("reason")
    if doc.get("stage") == "rolled_back" or (
        isinstance(reason, str) and reason.startswith("rollback_")
    ):
        return doc
    return None
