"""``edge-fleet rollback --host H --device ID``: ask a device to go back to its previous
model version; ``--wait`` follows its events until it reports the result."""

from __future__ import annotations

import argparse
import json

from converter.fleet.broker import Session, add_broker_arguments
from edge_runtime.errors import UpdateError
from edge_runtime.telemetry.collect import utc_now


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rollback", help="make a device serve its previous model version")
    add_broker_arguments(p)
    p.add_argument("--device", required=True)
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the result")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    events = f"{args.prefix}/{args.device}/model/events"
    session = Session(args, [events] if args.wait > 0 else [])
    try:
        request = {"reason": "operator", "ts": utc_now()}
        session.publish(f"{args.prefix}/{args.device}/model/rollback", json.dumps(request).encode())
        print(f"asked {args.device} to roll back")
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
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if doc.get("stage") == "rolled_back" or doc.get("reason") == "rollback_failed":
        return doc  # type: ignore[no-any-return]
    return None
