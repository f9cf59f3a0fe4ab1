"""Measure what an MQTT 5 broker does with what the fleet relies on; prints one JSON line.

    python tools/broker_limits.py --port 1883 [--host H] [--username U --password P]
                                  [--retained 1250] [--queue 12000]

- ``retained``: N retained messages under one folder; how many a new subscription to
  ``<folder>/+`` gets (a bundle's chunks reach a device that way; ejabberd's
  ``match_retained_limit`` is 1,000 by default).
- ``session``: the session expiry the broker grants to a client asking for 7 days (the
  daemon's default), and whether a message queued while it was away reaches it.
- ``queue``: N QoS 1 messages sent to an offline persistent session; how many, and which,
  reach it when it returns.

Plain TCP, for a broker on a test machine; every topic is under ``broker-limits/`` and the
retained messages are cleared afterwards.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WEEK = 7 * 24 * 3600
QUIET = 2.0  # seconds without a new message that end a collection


@dataclass
class Probe:
    """A paho client that keeps what it hears; connected by ``connect``."""

    client: paho.Client
    heard: list[bytes] = field(default_factory=list)
    connack: threading.Event = field(default_factory=threading.Event)
    session_present: bool = False
    expiry: int | None = None


def connect(args: argparse.Namespace, client_id: str, expiry: int = 0) -> Probe:
    """Connected with clean start off when ``expiry`` > 0 (a persistent session)."""
    probe = Probe(
        paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
        )
    )

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        probe.session_present = bool(flags.session_present)
        probe.expiry = getattr(props, "SessionExpiryInterval", None)
        probe.connack.set()

    probe.client.on_connect = on_connect
    probe.client.on_message = lambda client, userdata, msg: probe.heard.append(bytes(msg.payload))
    if args.username:
        probe.client.username_pw_set(args.username, args.password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    probe.client.connect(args.host, args.port, 30, clean_start=expiry == 0, properties=props)
    probe.client.loop_start()
    if not probe.connack.wait(10):
        raise TimeoutError(f"no CONNACK from {args.host}:{args.port}")
    return probe


def publish(probe: Probe, items: list[tuple[str, bytes]], *, retain: bool = False) -> None:
    for info in [probe.client.publish(t, p, qos=1, retain=retain) for t, p in items]:
        info.wait_for_publish(60)


def subscribe(probe: Probe, topic_filter: str) -> None:
    done = threading.Event()
    probe.client.on_subscribe = lambda *_: done.set()
    probe.client.subscribe(topic_filter, 1)
    done.wait(10)


def collect(probe: Probe) -> list[bytes]:
    """What arrives until nothing new has come for ``QUIET`` seconds."""
    seen = -1
    while len(probe.heard) != seen:
        seen = len(probe.heard)
        time.sleep(QUIET)
    return list(probe.heard)


def close(probe: Probe) -> None:
    probe.client.disconnect()
    probe.client.loop_stop()


def retained(args: argparse.Namespace, count: int) -> dict[str, int]:
    folder = f"broker-limits/retained-{time.monotonic_ns()}"
    sender = connect(args, f"limits-sender-{time.monotonic_ns()}")
    topics = [f"{folder}/{i}" for i in range(count)]
    publish(sender, [(t, b"x" * 64) for t in topics], retain=True)
    reader = connect(args, f"limits-reader-{time.monotonic_ns()}")
    subscribe(reader, folder + "/+")
    got = collect(reader)
    close(reader)
    publish(sender, [(t, b"") for t in topics], retain=True)
    close(sender)
    return {"retained": count, "delivered_to_one_subscription": len(got)}


def queued(args: argparse.Namespace, count: int, topic: str, client_id: str) -> dict[str, Any]:
    """``count`` messages sent to ``client_id``'s session while it is offline."""
    away = connect(args, client_id, WEEK)
    granted = away.expiry
    subscribe(away, topic)
    close(away)
    sender = connect(args, f"limits-sender-{time.monotonic_ns()}")
    publish(sender, [(topic, str(i).encode()) for i in range(count)])
    close(sender)
    back = connect(args, client_id, WEEK)
    got = [int(p) for p in collect(back)]
    resumed = back.session_present
    close(back)
    close(connect(args, client_id))  # clean start, no expiry: the session is gone
    return {
        "asked_expiry_s": WEEK,
        "granted_expiry_s": granted if granted is not None else WEEK,
        "session_present": resumed,
        "queued": count,
        "delivered": len(got),
        "first": got[0] if got else None,
        "last": got[-1] if got else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--username", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--retained", type=int, default=1250)
    p.add_argument("--queue", type=int, default=12000)
    args = p.parse_args(argv)
    stamp = time.monotonic_ns()
    report = {
        "retained": retained(args, args.retained),
        "session": queued(args, 1, f"broker-limits/session-{stamp}", f"limits-s-{stamp}"),
        "queue": queued(args, args.queue, f"broker-limits/queue-{stamp}", f"limits-q-{stamp}"),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
