"""Drive requests over MQTT and time their answers: saturation throughput and latency
percentiles at a given rate. Requests are the raw JPEG bytes with an MQTT 5 correlation
data that the answer carries back (what a camera client sends), or, with ``raw=False``,
JSON ``{"id", "image_b64"}``; the daemon and the baseline read both forms."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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


class LoadDriver:
    """One MQTT client that publishes requests and collects the answers' arrival times."""

    def __init__(self, port: int, request_topic: str, answer_topic: str, raw: bool = True) -> None:
        self.request_topic = request_topic
        self.raw = raw
        self._answers: dict[str, float] = {}
        self._versions: dict[str, str] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        # A load generator must not add Nagle's delay to the requests it times.
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe(answer_topic, qos=1)
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK from the broker")

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
            self._versions[key] = str((doc.get("model") or {}).get("version"))
            self._cond.notify_all()

    def run(self, image: bytes, count: int, rate: float | None, timeout: float) -> LoadResult:
        """Send ``count`` requests, all at once (``rate`` None) or ``rate`` per second."""
        tag = f"r{next(_runs)}"
        b64 = "" if self.raw else base64.b64encode(image).decode()
        sent: dict[str, float] = {}
        start = time.monotonic()
        for i in range(count):
            if rate is not None:
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
            key = f"{tag}-{i}"
            sent[key] = time.monotonic()
            if self.raw:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.CorrelationData = key.encode()
                self.client.publish(self.request_topic, image, qos=1, properties=props)
            else:
                self.client.publish(
                    self.request_topic, json.dumps({"id": key, "image_b64": b64}), qos=1
                )
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(k in self._answers for k in sent) < count and time.monotonic() < deadline:
                self._cond.wait(0.2)
            got = {k: self._answers[k] for k in sent if k in self._answers}
            versions = tuple(sorted({self._versions.get(k, "None") for k in got}))
            timeline = sorted((t, self._versions.get(k, "None")) for k, t in got.items())
        arrivals = [t for t, _ in timeline]
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        switch_gap = None
        if len(versions) > 1:  # the answers just before and after the first of the new one
            first = next(i for i, (_, v) in enumerate(timeline) if v != timeline[0][1])
            near = gaps[max(0, first - SWITCH_WINDOW) : first + SWITCH_WINDOW]
            switch_gap = round(max(near, default=0.0) * 1000, 2)
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
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
