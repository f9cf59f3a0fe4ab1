"""The operator's connection to the fleet's broker, shared by publish, status and rollback.

It uses the runtime's MQTT transport (the one module that imports paho) with a clean,
short-lived session; every message heard is kept in arrival order.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_runtime.errors import TransportError
from edge_runtime.transport.mqtt import Message, MqttOptions, MqttTransport

PASSWORD_ENV = "EDGE_FLEET_MQTT_PASSWORD"


def add_broker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", required=True, help="the fleet's MQTT broker")
    p.add_argument("--port", type=int, default=None, help="default 1883, or 8883 with --tls-ca")
    p.add_argument("--tls-ca", type=Path, default=None, help="CA of the broker's certificate")
    p.add_argument("--tls-cert", type=Path, default=None, help="client certificate")
    p.add_argument("--tls-key", type=Path, default=None)
    p.add_argument("--username", default=None, help=f"password from ${PASSWORD_ENV}")
    p.add_argument("--prefix", default="edge", help="topic prefix (default edge)")


class Session:
    """Connected on construction; ``heard`` holds (topic, payload) in arrival order."""

    def __init__(self, args: argparse.Namespace, subscriptions: Sequence[str] = ()) -> None:
        port = args.port or (8883 if args.tls_ca else 1883)
        self.heard: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._pending: set[int] = set()  # published, not yet acknowledged by the broker
        self._early: set[int] = set()  # acknowledged before publish() returned
        self.transport = MqttTransport(
            MqttOptions(
                host=args.host,
                port=port,
                client_id=f"edge-fleet-{os.getpid()}-{time.monotonic_ns() % 10**6}",
                username=args.username,
                password=os.environ.get(PASSWORD_ENV),
                tls_ca=args.tls_ca,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                session_expiry=0,
                reconnect_min=0.2,
                reconnect_max=1.0,
            ),
            subscriptions=[(t, 1) for t in subscriptions],
            on_message=self._on_message,
            on_published=self._on_published,
        )
        self.transport.start()
        if not self.transport.wait_connected(10):
            reason = self.transport.last_error or "no answer"
            self.transport.stop(1)
            raise TransportError(f"cannot reach the broker at {args.host}:{port}: {reason}")

    def _on_message(self, msg: Message) -> None:
        self.transport.ack(msg)
        with self._cond:
            self.heard.append((msg.topic, msg.payload))
            self._cond.notify_all()

    def _on_published(self, mid: int) -> None:
        with self._cond:
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._early.add(mid)
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        mid = self.transport.publish(topic, payload, qos=1, retain=retain)
        if mid is None:
            raise TransportError(f"could not publish to {topic}: the broker connection dropped")
        with self._cond:
            if mid in self._early:
                self._early.discard(mid)
            else:
                self._pending.add(mid)

    def flush(self, timeout: float) -> None:
        """Wait until the broker acknowledged everything published.

        Raises:
            TransportError: some messages are still unacknowledged after ``timeout``.
        """
        if not self.wait(lambda _: not self._pending, timeout):
            raise TransportError(
                f"the broker did not acknowledge {len(self._pending)} messages in {timeout:g} s"
            )

    def retained(self, topic_filter: str, seconds: float) -> list[tuple[str, bytes]]:
        """What the broker sends within ``seconds`` of a new subscription to
        ``topic_filter`` (the retained messages it holds, up to its own limit per
        subscription); unsubscribed again afterwards."""
        with self._cond:
            start = len(self.heard)
        self.transport.subscribe(topic_filter)
        try:
            self.wait(lambda _: False, seconds)
        finally:
            self.transport.unsubscribe(topic_filter)
        with self._cond:
            return self.heard[start:]

    def wait(self, done: Callable[[list[tuple[str, bytes]]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self.heard):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def close(self) -> None:
        try:
            self.flush(5.0)
        finally:
            self.transport.stop(2)
