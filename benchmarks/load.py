"""Drive requests over MQTT and time their answers: saturation throughput and latency
percentiles at a given rate. Requests are the raw JPEG bytes with an MQTT 5 correlation
data that the answer carries back (what a camera client sends), or, with ``raw=False``,
JSON ``{"id", "image_b64"}``; the daemon and the baseline read both forms.

The requests go out through a minimal MQTT 5 publisher on a socket of its own: a few
bytes of header encoded per request and the image handed to ``sendmsg`` without a copy.
The cameras a device serves are other machines, and a load generator sharing the
device's cores should take as little of them as it can: 0.3 ms of CPU a 300 kB request
this way, 0.65 ms with paho's ``publish``. Answers are read with paho.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, cast

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

_runs = itertools.count()
#: Answers on each side of a model switch searched for the pause it caused.
SWITCH_WINDOW = 10


@dataclass(frozen=True)
class LoadResult:
    sent: int
    answered: int
    seconds: float
    throughput: float
    latency_ms: dict[str, float]
    max_gap_ms: float  # longest wait between two consecutive answers
    versions: tuple[str, ...]  # model versions that answered
    switch_gap_ms: float | None = None  # longest wait around the first answer of a new version
    #: The same statistic over the run's other windows of as many answers, away from the
    #: update (median): what the switch window would show had nothing been switched.
    typical_gap_ms: float | None = None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    return _binary(text.encode())


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def switch_gaps(
    timeline: list[tuple[float, str]], busy_from: float
) -> tuple[float | None, float | None]:
    """For answers (arrival time, model version) in arrival order: the longest wait between
    two answers within ``SWITCH_WINDOW`` answers of the first from a new version, and the
    median of the same statistic over the other windows of as many answers, leaving out
    those from ``busy_from`` (when the update began) to the switch. Milliseconds; None,
    None when one version answered."""
    if len({v for _, v in timeline}) < 2:
        return None, None
    arrivals = [t for t, _ in timeline]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    first = next(i for i, (_, v) in enumerate(timeline) if v != timeline[0][1])
    near = gaps[max(0, first - SWITCH_WINDOW) : first + SWITCH_WINDOW]
    width = 2 * SWITCH_WINDOW
    others = [
        max(gaps[i : i + width])
        for i in range(0, len(gaps) - width + 1, width)
        if arrivals[i + width] < busy_from or i >= first + SWITCH_WINDOW
    ]
    typical = round(float(np.median(others)) * 1000, 2) if others else None
    return round(max(near, default=0.0) * 1000, 2), typical


class RawPublisher:
    """QoS 1 PUBLISH packets written straight to a socket, at most the broker's receive
    maximum unacknowledged (a reader thread counts the PUBACKs back in)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        header = _utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 60) + _varint(0)
        self.sock.sendall(_packet(0x10, header + _utf8(client_id)))
        first, body = self._read_packet()
        if first >> 4 != 2 or len(body) < 2 or body[1] != 0:
            raise ConnectionError(f"the broker refused the load generator: {body[:2]!r}")
        self._room = threading.Semaphore(_receive_maximum(body))
        self._ids = itertools.cycle(range(1, 65536))
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_acks, name="pubacks", daemon=True)
        self._reader.start()

    def _read_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the load generator's connection")
            data += chunk
        return bytes(data)

    def _read_packet(self) -> tuple[int, bytes]:
        first = self._read_exact(1)[0]
        length, shift = 0, 0
        while True:
            byte = self._read_exact(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return first, self._read_exact(length)

    def _read_acks(self) -> None:
        try:
            while True:
                first, _ = self._read_packet()
                if first >> 4 == 4:  # PUBACK
                    self._room.release()
        except OSError:
            return

    def publish(self, topic: bytes, payload: bytes, correlation: bytes | None) -> None:
        """One QoS 1 PUBLISH; ``topic`` already encoded (length and UTF-8)."""
        if not self._room.acquire(timeout=60):
            raise TimeoutError("the broker acknowledged no request for a minute")
        props = b"" if correlation is None else b"\x09" + _binary(correlation)
        body = topic + struct.pack("!H", next(self._ids)) + _varint(len(props)) + props
        head = b"\x32" + _varint(len(body) + len(payload)) + body
        sent = self.sock.sendmsg([head, payload])  # gathered: the payload is not copied
        if sent < len(head) + len(payload):  # interrupted part-way: send the rest
            self.sock.sendall((head + payload)[sent:])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def _binary(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _receive_maximum(connack: bytes) -> int:
    """The Receive Maximum property (0x21) of a CONNACK body; 65535 when absent."""
    length, shift, at = 0, 0, 2
    while True:
        byte = connack[at]
        length |= (byte & 0x7F) << shift
        shift += 7
        at += 1
        if not byte & 0x80:
            break
    end = at + length
    while at < end:
        prop = connack[at]
        at += 1
        if prop == 0x21:
            return int(struct.unpack_from("!H", connack, at)[0])
        if prop in _FIXED:
            at += _FIXED[prop]
        elif prop == 0x26:  # user property: two strings
            at += 2 + struct.unpack_from("!H", connack, at)[0]
            at += 2 + struct.unpack_from("!H", connack, at)[0]
        else:  # one string or binary
            at += 2 + struct.unpack_from("!H", connack, at)[0]
    return 65535


#: CONNACK properties of a fixed size: identifier -> bytes of value.
_FIXED = {0x11: 4, 0x13: 2, 0x21: 2, 0x22: 2, 0x24: 1, 0x25: 1, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1}


class LoadDriver:
    """One MQTT client that publishes requests and collects the answers' arrival times."""

    def __init__(self, port: int, request_topic: str, answer_topic: str, raw: bool = True) -> None:
        self.request_topic = request_topic
        self.raw = raw
        self._answers: dict[str, float] = {}
        self._versions: dict[str, str] = {}
        self._cond = threading.Condition()
        self._waiting: set[str] = set()  # keys of the running batch not answered yet
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        # A load generator must not add Nagle's delay to the requests it times.
        cast(socket.socket, self.client.socket()).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self.client.loop_start()
        self.client.subscribe(answer_topic, qos=1)
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK from the broker")
        self.publisher = RawPublisher(port, f"load-{id(self):x}")

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        try:
            doc = json.loads(msg.payload)
            correlation = getattr(msg.properties, "CorrelationData", None)
            key = bytes(correlation).decode() if self.raw and correlation else str(doc["id"])
        except (ValueError, KeyError, UnicodeDecodeError):
            return
        with self._cond:
            self._answers.setdefault(key, now)
            self._waiting.discard(key)
            self._versions[key] = str((doc.get("model") or {}).get("version"))
            if not self._waiting:
                self._cond.notify_all()

    def run(
        self,
        image: bytes,
        count: int,
        rate: float | None,
        timeout: float,
        update_at: float | None = None,
        alive: Callable[[], bool] = lambda: True,
    ) -> LoadResult:
        """Send ``count`` requests, all at once (``rate`` None) or ``rate`` per second;
        ``update_at``: seconds after the start when a model update begins (the windows
        from there to the switch are not taken as typical).

        Raises:
            RuntimeError: ``alive()`` turned false (the server under test ended) before
                every answer came.
        """
        tag = f"r{next(_runs)}"
        b64 = "" if self.raw else base64.b64encode(image).decode()
        sent: dict[str, float] = {}
        topic = _utf8(self.request_topic)
        with self._cond:
            self._waiting = {f"{tag}-{i}" for i in range(count)} - self._answers.keys()
        start = time.monotonic()
        for i in range(count):
            if rate is not None:
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
            key = f"{tag}-{i}"
            sent[key] = time.monotonic()
            if self.raw:
                self.publisher.publish(topic, image, key.encode())
            else:
                doc = json.dumps({"id": key, "image_b64": b64}).encode()
                self.publisher.publish(topic, doc, None)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting and time.monotonic() < deadline:
                if not alive():
                    raise RuntimeError(
                        f"the server under test ended with {len(self._waiting)} of "
                        f"{count} requests unanswered"
                    )
                self._cond.wait(0.2)
            got = {k: self._answers[k] for k in sent if k in self._answers}
            versions = tuple(sorted({self._versions.get(k, "None") for k in got}))
            timeline = sorted((t, self._versions.get(k, "None")) for k, t in got.items())
        arrivals = [t for t, _ in timeline]
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        busy_from = start + (update_at if update_at is not None else float("inf"))
        switch_gap, typical = switch_gaps(timeline, busy_from)
        last = max(got.values(), default=start)
        seconds = last - start
        lat = np.array([(got[k] - sent[k]) * 1000 for k in got]) if got else np.zeros(1)
        return LoadResult(
            sent=count,
            answered=len(got),
            seconds=round(seconds, 3),
            throughput=round(len(got) / seconds, 2) if seconds > 0 else 0.0,
            latency_ms={
                p: round(float(np.percentile(lat, q)), 2)
                for p, q in (("p50", 50), ("p90", 90), ("p99", 99))
            },
            max_gap_ms=round(max(gaps, default=0.0) * 1000, 2),
            versions=versions,
            switch_gap_ms=switch_gap,
            typical_gap_ms=typical,
        )

    def close(self) -> None:
        self.publisher.close()
        self.client.loop_stop()
        self.client.disconnect()
