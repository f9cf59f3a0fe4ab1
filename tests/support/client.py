"""A small MQTT client for tests (paho 2), collecting what it receives."""

from __future__ import annotations

import contextlib
import itertools
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .mosquitto import TlsFiles

_ids = itertools.count()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    correlation_data: bytes | None
    #: the broker delivered it again (DUP flag): a redelivery to this client, not a
    #: second publication by the sender
    dup: bool = False

    def json(self) -> object:
        import json

        return json.loads(self.payload)


class TestClient:
    """Connects at construction; ``received`` holds every message, in arrival order."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        port: int,
        *,
        protocol: str = "5",
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        timeout: float = 10.0,
        persistent: bool = False,
    ) -> None:
        """``persistent``: a session that survives disconnects and broker restarts
        (fixed client id, clean start off); paho reconnects by itself."""
        self.v5 = protocol == "5"
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{next(_ids)}-{time.monotonic_ns()}",
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else not persistent,
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self._subscriptions: list[tuple] = []
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self.refused: str | None = None
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca),
                certfile=str(tls.client_cert),
                keyfile=str(tls.client_key),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        connect_props = None
        if self.v5 and persistent:
            connect_props = Properties(PacketTypes.CONNECT)
            connect_props.SessionExpiryInterval = 3600
        if self.v5:
            self.client.connect(
                "127.0.0.1",
                port,
                keepalive=30,
                clean_start=not persistent,
                properties=connect_props,
            )
        else:
            self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise TimeoutError(f"test client not connected: {self.refused}")

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            self.refused = str(reason)
        else:
            for topic, qos in self._subscriptions:
                client.subscribe(topic, qos)
            self._connected.set()

    def wait_connected(self, timeout: float = 15.0) -> bool:
        return self._connected.wait(timeout)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        corr = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        with self._cond:
            self.received.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain), corr, bool(msg.dup))
            )
            self._cond.notify_all()

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self._subscriptions.append((topic, qos))
        self.client.subscribe(topic, qos)
        if not done.wait(timeout):
            raise TimeoutError(f"no SUBACK for {topic}")

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        correlation: bytes | None = None,
        response_topic: str | None = None,
        wait: bool = True,
    ) -> None:
        props = None
        if self.v5 and (correlation or response_topic):
            props = Properties(PacketTypes.PUBLISH)
            if correlation:
                props.CorrelationData = correlation
            if response_topic:
                props.ResponseTopic = response_topic
        info = self.client.publish(topic, payload, qos=qos, properties=props)
        if wait and qos:
            info.wait_for_publish(10)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float
    ) -> list[Received]:
        """Wait until ``predicate(received)`` holds; returns a copy either way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            return list(self.received)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.received if m.topic == topic]

    def close(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):  # already gone is fine here
            self.client.disconnect()
