"""MQTT through paho 2.x: the only module that imports paho.

Callbacks only convert paho objects to plain values and hand them over; paho errors
become ``TransportError``. The session is persistent (fixed client id, clean start off,
session expiry for MQTT 5) so QoS 1 requests sent while the device was away are
delivered when it returns; subscriptions are renewed on every connect. Reconnects use
exponential backoff with jitter, in this module's own network thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_runtime.daemon.supervisor import Heartbeats, unsupervised
from edge_runtime.errors import TransportError
from edge_runtime.transport.backoff import backoff_delay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    will_topic: str | None = None
    will_payload: bytes = b"offline"
    online_payload: bytes = b"online"
    session_expiry: int = 7 * 24 * 3600
    #: MQTT 5 Receive Maximum: unacknowledged QoS 1 requests the broker may send at once
    receive_maximum: int = 20
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True)
class Message:
    """An incoming message as plain values."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    response_topic: str | None = None
    correlation_data: bytes | None = None
    duplicate: bool = False


class MqttTransport:
    """One persistent connection, its network thread, and a small publish/ack API."""

    def __init__(
        self,
        options: MqttOptions,
        *,
        subscriptions: Sequence[tuple[str, int]],
        on_message: Callable[[Message], None],
        on_connection: Callable[[bool], None] = lambda up: None,
        on_published: Callable[[int], None] = lambda mid: None,
        heartbeats: Heartbeats = unsupervised,
    ) -> None:
        """The network thread reports to the heartbeat ``mqtt``: stuck when one round
        of the client's loop (callbacks included) or one connection attempt takes
        longer than the keepalive and a TCP connect together."""
        self.options = options
        self._beat = heartbeats("mqtt", options.keepalive + 30.0)
        self._subscriptions = list(subscriptions)
        self._subscriptions_lock = threading.Lock()
        self._on_message = on_message
        self._on_connection = on_connection
        self._on_published = on_published
        self._v5 = options.protocol == "5"
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        o = self.options
        try:
            client = paho.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=o.client_id,
                protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
                clean_session=None if self._v5 else False,
                manual_ack=True,
            )
            client.max_inflight_messages_set(100)
            if o.will_topic:
                client.will_set(o.will_topic, o.will_payload, qos=1, retain=True)
            if o.username is not None:
                client.username_pw_set(o.username, o.password)
            if o.tls_ca is not None:
                client.tls_set(
                    ca_certs=str(o.tls_ca),
                    certfile=None if o.tls_cert is None else str(o.tls_cert),
                    keyfile=None if o.tls_key is None else str(o.tls_key),
                    cert_reqs=ssl.CERT_REQUIRED,
                )
        except (ValueError, OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot set up the MQTT client: {exc}") from exc
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        # Only the network thread writes to the socket: with this set, ``publish`` from
        # another thread queues the packet and wakes the loop instead of writing itself.
        # A write that failed on the caller's thread closed the socket with the broker's
        # last acknowledgements unread in it, and the client then sent those messages
        # again after the reconnect (published twice although acknowledged).
        client.on_socket_register_write = _write_on_the_network_thread
        return client

    # -- paho callbacks: convert and hand over --------------------------------------
    def _handle_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("MQTT %s", self.last_error)
            return
        self._generation += 1
        self._connected.set()
        log.info(
            "MQTT connected to %s:%d (session present: %s)",
            self.options.host,
            self.options.port,
            getattr(flags, "session_present", None),
        )
        with self._subscriptions_lock:
            subscriptions = list(self._subscriptions)
        if subscriptions:
            client.subscribe(subscriptions)
        if self.options.will_topic:
            client.publish(self.options.will_topic, self.options.online_payload, qos=1, retain=True)
        self._on_connection(True)

    def _handle_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            level = logging.INFO if self._stop.is_set() else logging.WARNING  # asked to stop
            log.log(level, "MQTT disconnected: %s", reason)
            self._on_connection(False)

    def _handle_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """Convert and hand over; the receiver must not parse or store here. Should it
        raise all the same, the message is logged and left, not the network thread."""
        try:
            response_topic = correlation = None
            props = getattr(msg, "properties", None)
            if props is not None:
                response_topic = getattr(props, "ResponseTopic", None)
                correlation = getattr(props, "CorrelationData", None)
            self._on_message(
                Message(
                    topic=msg.topic,
                    payload=bytes(msg.payload),
                    qos=int(msg.qos),
                    mid=int(msg.mid),
                    generation=self._generation,
                    response_topic=response_topic or None,
                    correlation_data=bytes(correlation) if correlation else None,
                    duplicate=bool(getattr(msg, "dup", False)),
                )
            )
        except Exception:  # noqa: BLE001 - the network thread serves every other message
            log.exception("an incoming message could not be handed over (message id %s)", msg.mid)

    def _handle_publish(
        self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        self._on_published(int(mid))

    # -- public API -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._beat.guard(self._run), name="mqtt", daemon=True
        )
        self._thread.start()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
    ) -> int | None:
        """Send now if connected; returns the message id (the message went out, or the
        client keeps it and sends it on reconnect: see ``publish_result``), or None when
        offline or the client cannot take it now.

        Raises:
            TransportError: the message cannot be sent at all (bad topic, too large).
        """
        if not self._connected.is_set():
            return None
        props = None
        if self._v5 and correlation_data:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation_data
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except (ValueError, TypeError) as exc:
            raise TransportError(f"cannot publish to {topic!r}: {exc}") from exc
        return publish_result(topic, int(info.rc), int(info.mid))

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Add a subscription, now if connected and at every later connect."""
        with self._subscriptions_lock:
            if (topic, qos) in self._subscriptions:
                return
            self._subscriptions.append((topic, qos))
        if self.connected:
            self._client.subscribe(topic, qos)

    def unsubscribe(self, topic: str) -> None:
        with self._subscriptions_lock:
            self._subscriptions = [s for s in self._subscriptions if s[0] != topic]
        if self.connected:
            self._client.unsubscribe(topic)

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message once its answer is safe; a message from an
        earlier connection is left for the broker to redeliver."""
        if message.qos == 0 or message.generation != self._generation or not self.connected:
            return
        try:
            self._client.ack(message.mid, message.qos)
        except (ValueError, OSError) as exc:
            log.debug("ack of %d failed: %s", message.mid, exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), disconnect cleanly and join the network thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 2)
            self._thread = None

    # -- network thread ---------------------------------------------------------------
    def _connect(self, first: bool) -> None:
        o = self.options
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = o.session_expiry
            props.ReceiveMaximum = max(1, min(65535, o.receive_maximum))
        if first:
            kwargs: dict[str, Any] = {"clean_start": False, "properties": props} if self._v5 else {}
            self._client.connect(o.host, o.port, o.keepalive, **kwargs)
        else:
            self._client.reconnect()
        _no_delay(self._client.socket())

    def _run(self) -> None:
        attempt, first = 0, True
        beat = self._beat
        while not self._stop.is_set():
            beat.beat()
            try:
                self._connect(first)
                first = False
            except (OSError, ValueError, paho.WebsocketConnectionError) as exc:
                self.last_error = (
                    f"cannot connect to {self.options.host}:{self.options.port}: {exc}"
                )
                delay = backoff_delay(
                    attempt, minimum=self.options.reconnect_min, maximum=self.options.reconnect_max
                )
                log.warning("MQTT %s; retrying in %.1fs", self.last_error, delay)
                attempt += 1
                beat.idle()
                self._stop.wait(delay)
                continue
            while not self._stop.is_set():
                beat.beat()
                rc = self._client.loop(timeout=0.2)
                if self._connected.is_set():
                    attempt = 0
                if rc != paho.MQTT_ERR_SUCCESS:
                    break
            if self._stop.is_set():
                break
            self._handle_disconnect(None, None, None, "connection lost", None)
            delay = backoff_delay(
                attempt, minimum=self.options.reconnect_min, maximum=self.options.reconnect_max
            )
            attempt += 1
            beat.idle()
            self._stop.wait(delay)
        beat.beat()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._connected.is_set() and self.options.will_topic:
            try:
                info = self._client.publish(
                    self.options.will_topic, self.options.will_payload, qos=1, retain=True
                )
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline:
                    if self._client.loop(timeout=0.1) != paho.MQTT_ERR_SUCCESS:
                        break
            except (ValueError, OSError, RuntimeError) as exc:
                log.debug("offline status not sent: %s", exc)
        try:
            self._client.disconnect()
            self._client.loop(timeout=0.2)
        except (ValueError, OSError) as exc:
            log.debug("disconnect: %s", exc)
        self._connected.clear()


#: paho's answers to ``publish`` for a message that can never be sent as it is. Any
#: other failure is the connection's (NO_CONN: it dropped just before; CONN_LOST: it
#: dropped while the message was being written): paho has already kept a QoS 1 message
#: and sends it again on reconnect with the same message id, so it is "not sent yet".
_NEVER = frozenset({paho.MQTT_ERR_PAYLOAD_SIZE, paho.MQTT_ERR_INVAL, paho.MQTT_ERR_NOT_SUPPORTED})
#: "Not now": the client's queue is full and it did not keep the message.
_NOT_NOW = frozenset({paho.MQTT_ERR_QUEUE_SIZE})


def publish_result(topic: str, rc: int, mid: int) -> int | None:
    """What a paho ``publish`` return code means for the message: its id when the
    client took it (sent, or to be sent on reconnect), None when the caller must keep
    it and offer it again later.

    Raises:
        TransportError: the message can never be sent as it is (too large, invalid):
            only then may the caller drop it.
    """
    if rc in _NEVER:
        raise TransportError(f"publish to {topic!r} failed: {paho.error_string(rc)}")
    if rc in _NOT_NOW:
        return None
    return mid


def _write_on_the_network_thread(client: Any, userdata: Any, sock: Any) -> None:
    """Nothing to do: the packet is queued and ``loop`` is woken by the client itself."""


def _no_delay(sock: Any) -> None:
    """Send small packets at once. With Nagle's algorithm on, an answer written right
    after the request's PUBACK waits for the broker's delayed ACK: about 40 ms a request."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # not TCP: nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
