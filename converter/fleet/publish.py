"""``edge-fleet publish BUNDLE --host H (--device ID | --group G) [--url URL]``.

Checks the bundle locally, then publishes its notice retained on the device's or the
group's ``model/update`` topic, so devices that are offline get it when they come back.
Devices download the bundle from ``--url`` (any HTTP(S) origin or object store); without
``--url`` the notice names the bundle's ``file://`` path, for devices that share this
machine's file system. ``--wait`` follows the device's events until it applies or
refuses the update. ``--withdraw`` clears the retained notice.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from converter.fleet.broker import Session, add_broker_arguments
from edge_runtime.bundle.reader import scan_bundle
from edge_runtime.errors import UpdateError
from edge_runtime.trust.check import check_bundle_file
from edge_runtime.update.service import build_notice


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("publish", help="announce a signed bundle to a device or a group")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    add_broker_arguments(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="one device id")
    target.add_argument("--group", help="an update group (devices list it in config)")
    p.add_argument("--url", default=None, help="where devices download the bundle")
    p.add_argument("--trust", type=Path, default=None, help="check signatures against this first")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to follow --device's events")
    p.add_argument("--withdraw", action="store_true", help="clear the retained notice")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    topic = (
        f"{args.prefix}/{args.device}/model/update"
        if args.device
        else f"{args.prefix}/groups/{args.group}/model/update"
    )
    if args.withdraw:
        session = Session(args)
        session.publish(topic, b"", retain=True)
        session.close()
        print(f"withdrew the notice on {topic}")
        return 0
    meta = scan_bundle(args.bundle)  # integrity: hashes and sizes of every member
    if args.trust is not None:
        check_bundle_file(args.bundle, args.trust, None, None)
    url = args.url or args.bundle.resolve().as_uri()
    notice = build_notice(args.bundle, url)
    events = f"{args.prefix}/{args.device or '+'}/model/events"
    session = Session(args, [events] if args.wait > 0 else [])
    try:
        session.publish(topic, json.dumps(notice).encode(), retain=True)
        version = meta.manifest.version
        print(f"published {meta.manifest.name} {version} on {topic} (url {url})")
        if args.wait > 0:
            return _follow(session, str(version), args.wait)
    finally:
        session.close()
    return 0


FINAL = ("applied", "rejected", "rolled_back")


def _follow(session: Session, version: str, timeout: float) -> int:
    """Print the events of ``version`` until a device (the first of a group) finishes."""
    shown = 0
    results: list[str] = []

    def finished(heard: list[tuple[str, bytes]]) -> bool:
        nonlocal shown
        for topic, payload in heard[shown:]:
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            if doc.get("version") != version:
                continue
            reason = f" ({doc['reason']}: {doc.get('detail', '')})" if doc.get("reason") else ""
            progress = f" {doc['progress']:.0%}" if isinstance(doc.get("progress"), float) else ""
            print(f"  {topic.split('/')[-3]}: {doc['stage']}{progress}{reason}")
            if doc.get("stage") in FINAL:
                results.append(doc["stage"])
        shown = len(heard)
        return bool(results)

    if not session.wait(finished, timeout):
        raise UpdateError(f"no result from the device within {timeout:g} s")
    return 0 if results[0] == "applied" else 1
