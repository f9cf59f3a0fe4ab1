"""The daemon's sources: one ``SourceWorker`` per ``[[sources]]`` table, their frames
turned into the model's input, their answers routed back to them, their messages
published (predictions through the publisher like answers; the retained state and
snapshot straight to the broker, the state again at every connect) and their counts in
telemetry."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.outbox import ANSWER, Outgoing
from edge_runtime.daemon.pipeline import Answer, Job, deliver_directly
from edge_runtime.daemon.requests import Request
from edge_runtime.daemon.supervisor import Heartbeats, unsupervised
from edge_runtime.errors import TransportError
from edge_runtime.inference.types import InputSpec
from edge_runtime.sources.frames import Decoded
from edge_runtime.sources.open import open_reader
from edge_runtime.sources.prepare import prepare_frame, sizing
from edge_runtime.sources.worker import Emitter, FrameReply, SourceWorker
from edge_runtime.telemetry.collect import utc_now
from edge_runtime.telemetry.stats import rate

log = logging.getLogger(__name__)

#: Snapshots are decoded with at least this many pixels on their long side.
SNAPSHOT_SIDE = 320

#: publish(topic, payload, qos, retain): straight to the broker
Publish = Callable[[str, bytes, int, bool], None]
#: send(messages): through the publisher (kept in the outbox while offline)
Send = Callable[[list[Outgoing]], None]


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def route_frames(answer: Answer) -> Answer:
    """The pipeline's ``answer``: answers to frames go back to their sources; the rest
    to ``answer``."""
    return deliver_directly(FrameReply, answer)


class DaemonEmitter(Emitter):
    def __init__(
        self, topic: Callable[[str, str], str], device_id: str, send: Send, publish: Publish
    ) -> None:
        self._topic = topic
        self._device_id = device_id
        self._send = send
        self._publish = publish
        self._states: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def prediction(self, name: str, doc: dict[str, Any]) -> None:
        full = {"device_id": self._device_id, "ts": utc_now(), **doc}
        self._send([Outgoing(ANSWER, self._topic(name, "predictions"), _dumps(full), 1)])

    def state(self, name: str, state: str, detail: str) -> None:
        payload = _dumps({"state": state, "detail": detail, "ts": utc_now()})
        with self._lock:
            self._states[name] = payload
        self._publish(self._topic(name, "state"), payload, 1, True)

    def snapshot(self, name: str, jpeg: bytes) -> None:
        self._publish(self._topic(name, "snapshot"), jpeg, 0, True)

    def republish(self) -> None:
        """The retained states again (a new connection; on the MQTT thread, so a state
        the broker can never take is logged, not raised)."""
        with self._lock:
            states = dict(self._states)
        for name, payload in states.items():
            try:
                self._publish(self._topic(name, "state"), payload, 1, True)
            except TransportError as exc:
                log.warning("source %s: state not published again: %s", name, exc)


class Sources:
    def __init__(
        self,
        configs: tuple[SourceConfig, ...],
        *,
        engine: Callable[[], Any],
        submit: Callable[[Job], bool],
        emitter: DaemonEmitter,
        heartbeats: Heartbeats = unsupervised,
    ) -> None:
        self._engine = engine
        self.emitter = emitter
        self.workers = [
            SourceWorker(
                c,
                opener=self._opener(c),
                to_request=self._to_request,
                submit=submit,
                emit=emitter,
                heartbeats=heartbeats,
            )
            for c in configs
        ]
        self._before: dict[str, dict[str, Any]] = {}
        self._before_at = time.monotonic()

    def _spec(self) -> InputSpec:
        spec: InputSpec = self._engine().input_spec
        return spec

    def _opener(self, config: SourceConfig) -> Callable[[], Any]:
        size = sizing(self._spec, SNAPSHOT_SIDE if config.snapshot else 0)

        def opener() -> Any:
            gray = self._spec().channels == 1 and not config.snapshot
            return open_reader(config.url, size, gray=gray)

        return opener

    def _to_request(self, frame: Decoded, request_id: str) -> Request:
        """The frame as the model's input, prepared as an image request is (the engine's
        resize mode, colour order and normalisation, where it sits on the frame)."""
        return Request(
            request_id, b"", source="camera", prepared=prepare_frame(frame, self._spec())
        )

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.stop(max(0.1, deadline - time.monotonic()))

    def on_connection(self, up: bool) -> None:
        if up:
            self.emitter.republish()

    def telemetry(self) -> dict[str, Any]:
        """``sources`` of telemetry: each source's state, rates since the last call,
        counts since start and capture-to-publish latency."""
        now = time.monotonic()
        seconds, self._before_at = now - self._before_at, now
        out: dict[str, Any] = {}
        for w in self.workers:
            s = w.stats()
            before = self._before.get(w.name, {"frames_in": 0, "processed": 0})
            self._before[w.name] = s
            out[w.name] = {
                "state": s["state"],
                "fps_in": round(rate(s["frames_in"], before["frames_in"], seconds), 3),
                "fps_processed": round(rate(s["processed"], before["processed"], seconds), 3),
                "dropped": s["dropped"],
                "errors": s["errors"],
                "reconnects": s["reconnects"],
                "decoder": s["decoder"],
                "latency_ms": s["latency_ms"],
            }
        return out
