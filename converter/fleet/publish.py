"""``edge-fleet publish BUNDLE --host H (--device ID | --group G) [--url URL | --mqtt]``.

Checks the bundle locally, then publishes its notice retained on the device's or the
group's ``model/update`` topic, so devices that are offline get it when they come back.
Devices download the bundle from ``--url`` (any HTTP(S) origin or object store). With
``--mqtt`` the bundle itself goes through the broker, in retained chunks on
``<prefix>/bundles/<key>/<i>`` (see ``edge_runtime.update.chunks``), for devices that
reach nothing else; never more than ``MAX_CHUNKS`` of them (a larger bundle gets larger
chunks than ``--chunk-size``), since a broker may deliver no more retained messages to
one subscription. With neither, the notice names the bundle's ``file://`` path, for
devices that share this machine's file system. ``--wait`` follows the device's events
until it applies or refuses the update. ``--withdraw`` clears the retained notice (and,
with ``--mqtt``, the chunks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from converter.fleet.broker import Session, add_broker_arguments
from edge_runtime.bundle.reader import scan_bundle
from edge_runtime.errors import UpdateError
from edge_runtime.trust.check import check_bundle_file
from edge_runtime.update.chunks import (
    DEFAULT_CHUNK_BYTES,
    MAX_CHUNKS,
    ChunkPlan,
    chunk_size_for,
    chunk_topic,
    split,
)
from edge_runtime.update.service import build_notice


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("publish", help="announce a signed bundle to a device or a group")
    p.add_argument("bundle", type=Path, metavar="BUNDLE")
    add_broker_arguments(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="one device id")
    target.add_argument("--group", help="an update group (devices list it in config)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--url", default=None, help="where devices download the bundle")
    source.add_argument(
        "--mqtt", action="store_true", help="send the bundle through the broker, in chunks"
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_BYTES,
        help=f"bytes per chunk with --mqtt (default {DEFAULT_CHUNK_BYTES}; larger where the "
        f"bundle would need more than {MAX_CHUNKS} chunks)",
    )
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
        return _withdraw(args, topic)
    meta = scan_bundle(args.bundle)  # integrity: hashes and sizes of every member
    if args.trust is not None:
        check_bundle_file(args.bundle, args.trust, None, None)
    events = f"{args.prefix}/{args.device or '+'}/model/events"
    session = Session(args, [events] if args.wait > 0 else [])
    try:
        if args.mqtt:
            plan, pieces, folder = _chunks(args)
            for i, piece in enumerate(pieces):  # the chunks first: the notice points at them
                session.publish(f"{folder}/{i}", piece, retain=True)
            session.flush(60.0 + len(pieces))
            notice = build_notice(args.bundle, None, chunks=plan)
            where = f"{len(pieces)} chunks on {folder}/+, {plan.size} bytes each"
        else:
            url = args.url or args.bundle.resolve().as_uri()
            notice = build_notice(args.bundle, url)
            where = f"url {url}"
        session.publish(topic, json.dumps(notice).encode(), retain=True)
        version = meta.manifest.version
        print(f"published {meta.manifest.name} {version} on {topic} ({where})")
        if args.wait > 0:
            return _follow(session, str(version), args.wait)
    finally:
        session.close()
    return 0


#: Rounds of "subscribe, clear what the broker sends" in a withdrawal: a broker that sends
#: at most 1,000 retained messages per subscription still gives up 10,000 chunks.
WITHDRAW_ROUNDS = 10


def _withdraw(args: argparse.Namespace, topic: str) -> int:
    """Clear the retained notice and, with ``--mqtt``, every retained chunk the broker
    holds for the bundle (whatever chunk size it was sent with)."""
    session = Session(args)
    cleared = 0
    try:
        session.publish(topic, b"", retain=True)
        if args.mqtt:
            cleared = _clear_chunks(session, args)
    finally:
        session.close()
    print(
        f"withdrew the notice on {topic}"
        + (f" and its chunks ({cleared} topics cleared)" if args.mqtt else "")
    )
    return 0


def _clear_chunks(session: Session, args: argparse.Namespace) -> int:
    """Clear the chunks a publish with these arguments sent, then, round after round,
    whatever the broker still retains under the bundle's folder (chunks of another size,
    or more than it delivers to one subscription). Returns how many were cleared."""
    data = args.bundle.read_bytes()
    folder = chunk_topic(args.prefix, hashlib.sha256(data).hexdigest())
    try:
        size = chunk_size_for(len(data), args.chunk_size)
    except ValueError as exc:
        raise UpdateError(f"--chunk-size: {exc}") from exc
    chunks = [f"{folder}/{i}" for i in range(-(-len(data) // size))]
    cleared = 0
    for _ in range(WITHDRAW_ROUNDS + 1):
        for chunk in chunks:
            session.publish(chunk, b"", retain=True)
        session.flush(60.0 + len(chunks))
        cleared += len(chunks)
        heard = session.retained(folder + "/+", 1.0)  # a broker sends what it retains at once
        chunks = sorted({t for t, payload in heard if payload})
        if not chunks:
            return cleared
    raise UpdateError(f"chunks are still retained on {folder}/+ after {WITHDRAW_ROUNDS} rounds")


def _chunks(args: argparse.Namespace) -> tuple[ChunkPlan, list[bytes], str]:
    data = args.bundle.read_bytes()
    try:
        plan, pieces = split(data, args.chunk_size)
    except ValueError as exc:
        raise UpdateError(f"--chunk-size: {exc}") from exc
    return plan, pieces, chunk_topic(args.prefix, hashlib.sha256(data).hexdigest())


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
