"""One source: its capture (newest frame wins), its control thread (hands frames to the
pipeline one at a time, publishes the answers, reconnects with backoff) and its counts.

A frame is scaled and converted only when the control thread takes it for the model:
frames sampled out by ``fps`` and frames replaced by a newer one before the model took
them are never converted, and at most one unconverted frame waits (a decoder's buffer).

Fairness: at most one frame of a source is in the pipeline at a time, and it is
submitted without waiting, so requests keep the rest of the queue; a frame that finds
the queue full is dropped, not queued. The control thread is supervised (its heartbeat
is registered with the daemon's supervisor); the capture thread is the control thread's
own: when no frame came for ``stall_after`` seconds the source goes ``lost``, the
capture is abandoned and a new one started, so a hung decoder costs that source a
reconnect, never the daemon."""

from __future__ import annotations

import io
import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Protocol

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.requests import Request, RequestError
from edge_runtime.daemon.supervisor import Heartbeat, Heartbeats, unsupervised
from edge_runtime.errors import StorageError, TransportError
from edge_runtime.sources.capture import Capture, Opener
from edge_runtime.sources.changes import ChangeFilter
from edge_runtime.sources.frames import STALL_AFTER, Captured, Decoded
from edge_runtime.sources.redact import redacted
from edge_runtime.telemetry.stats import percentile
from edge_runtime.transport.backoff import backoff_delay

log = logging.getLogger(__name__)

#: Longest step of a source's control thread (converting and preparing one frame,
#: handing over an answer) before it counts as stuck.
CONTROL_BOUND = 30.0
#: Reconnect delays: from RETRY_MIN, doubling, to at most RETRY_MAX seconds.
RETRY_MIN = 1.0
RETRY_MAX = 30.0
#: Capture-to-publish latencies kept for the telemetry's percentiles.
LATENCY_WINDOW = 500
#: Snapshot JPEG quality.
SNAPSHOT_QUALITY = 85
#: What an emitter raises for a message it could not publish: the outbox cannot store
#: it (a full or failing state folder) or the broker can never take it (too large,
#: invalid). The source goes on; the message is counted in its ``errors``.
NOT_PUBLISHED = (StorageError, TransportError, sqlite3.Error)


@dataclass(frozen=True)
class Waiting:
    """A frame from the stream waiting for the model, not yet converted: ``ts``
    wall-clock and ``mono`` monotonic time of its capture (when the decoder gave it),
    ``index`` its number since the source started."""

    captured: Captured
    index: int
    ts: float
    mono: float


@dataclass(frozen=True)
class Frame:
    """A frame taken for the model, converted (``decoded``); the rest as ``Waiting``."""

    decoded: Decoded
    index: int
    ts: float
    mono: float


@dataclass(frozen=True)
class Outcome:
    """A frame's answer: the prediction dict, or the error."""

    frame: Frame
    result: dict[str, Any] | None
    error: RequestError | None


class FrameReply:
    """A frame job's ``done``: the answer goes back to its source (``route_frames``)."""

    def __init__(self, deliver: Callable[[Outcome], None], frame: Frame) -> None:
        self._deliver = deliver
        self.frame = frame

    def deliver(self, result: dict[str, Any] | None, error: RequestError | None) -> None:
        self._deliver(Outcome(self.frame, result, error))

    def __call__(self, ok: bool, doc: dict[str, Any]) -> None:
        """The ``Job.done`` form, for an answer that reached the publisher anyway."""


class Emitter(Protocol):
    """Where a source's messages go (the daemon publishes them). A message that cannot
    be published raises one of ``NOT_PUBLISHED``."""

    def prediction(self, name: str, doc: dict[str, Any]) -> None: ...

    def state(self, name: str, state: str, detail: str) -> None: ...

    def snapshot(self, name: str, jpeg: bytes) -> None: ...


#: to_request(frame, request id) -> the request carrying the model's prepared input
ToRequest = Callable[[Decoded, str], Request]
#: submit(job) -> taken (never waits)
Submit = Callable[[Job], bool]


class SourceWorker:
    def __init__(
        self,
        config: SourceConfig,
        *,
        opener: Opener,
        to_request: ToRequest,
        submit: Submit,
        emit: Emitter,
        heartbeats: Heartbeats = unsupervised,
        stall_after: float = STALL_AFTER,
    ) -> None:
        self.config = config
        self.name = config.name
        self._opener = opener
        self._to_request = to_request
        self._submit = submit
        self._emit = emit
        self._stall_after = stall_after
        self._file = config.url.startswith("file://")
        self._changes = ChangeFilter(config.publish, config.min_score, config.heartbeat)
        self._interval = 1.0 / config.fps if config.fps > 0 else 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        # guarded by _cond
        self._pending: Waiting | None = None
        self._outcomes: list[Outcome] = []
        self._ended: str | None = None  # the capture's end ("" = end of stream)
        self._last_frame = 0.0
        self._receiving = False  # a frame came in this attempt
        self._next_due = 0.0
        self._index = 0
        self._in_flight = False
        # counts (telemetry)
        self.state = "stopped"
        self.frames_in = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.reconnects = 0
        self.decoder = ""  # what decodes the stream, once it streams
        self._failing: set[str] = set()  # kinds of message not published (logged once)
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._beat = heartbeats(f"source-{config.name}", CONTROL_BOUND)
        self._thread = threading.Thread(
            target=self._beat.guard(self._run), name=f"source-{config.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        """Counts since start (the caller turns them into rates)."""
        values = list(self._latencies)
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return {
            "state": self.state,
            "frames_in": self.frames_in,
            "processed": self.processed,
            "dropped": self.dropped,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "decoder": self.decoder,
            "latency_ms": {
                "p50": None if p50 is None else round(p50, 3),
                "p99": None if p99 is None else round(p99, 3),
            },
        }

    # -- capture side (the capture thread) ----------------------------------------------
    def _on_frame(self, captured: Captured) -> None:
        mono = time.monotonic()
        with self._cond:
            self._index += 1
            self.frames_in += 1
            self._last_frame = mono
            self._receiving = True
            if self._interval and mono < self._next_due:
                return  # sampled out: fps takes fewer frames than the stream has
            self._next_due = max(self._next_due + self._interval, mono - self._interval)
            if self._pending is not None:
                self.dropped += 1  # never taken by the model: the newest frame wins
            self._pending = Waiting(captured, self._index, time.time(), mono)
            self._cond.notify_all()

    def _on_end(self, detail: str) -> None:
        with self._cond:
            self._ended = detail
            self._cond.notify_all()

    def _answered(self, outcome: Outcome) -> None:
        with self._cond:
            self._outcomes.append(outcome)
            self._cond.notify_all()

    # -- control thread -----------------------------------------------------------------
    def _set_state(self, state: str, detail: str = "") -> None:
        detail = redacted(detail, self.config.url)  # retained on MQTT, and logged
        if state != self.state:
            log.log(
                logging.WARNING if state == "lost" else logging.INFO,
                "source %s: %s%s",
                self.name,
                state,
                f" ({detail})" if detail else "",
            )
        self.state = state
        self._emitted("state", partial(self._emit.state, self.name, state, detail))

    def _emitted(self, kind: str, emit: Callable[[], None]) -> None:
        """Run ``emit`` (a message of ``kind``). One that cannot be published is counted
        in ``errors`` and logged once until a message of its kind is published again: a
        full disk or a message the broker refuses never stops the source."""
        try:
            emit()
        except NOT_PUBLISHED as exc:
            self.errors += 1
            if kind not in self._failing:
                self._failing.add(kind)
                log.error(
                    "source %s: %s not published (%s: %s); until one is, the others are "
                    "counted in its errors, not logged",
                    self.name,
                    kind,
                    type(exc).__name__,
                    exc,
                )
            return
        if kind in self._failing:
            self._failing.discard(kind)
            log.info("source %s: %s published again", self.name, kind)

    def _run(self, *_: Any) -> None:
        beat = self._beat
        attempt = 0
        lost = False
        while not self._stop.is_set():
            beat.beat()
            self._set_state("connecting")
            streamed, ending = self._stream_once(beat, lost)
            if ending is None:
                break  # stopping
            if streamed:
                attempt = 0
            if ending == "" and self._file:
                if self.config.loop:
                    continue
                self._set_state("ended", "the clip ended")
                beat.idle()
                self._stop.wait()
                break
            self.errors += 1
            lost = True
            self._set_state("lost", ending or "the stream ended")
            delay = backoff_delay(attempt, minimum=RETRY_MIN, maximum=RETRY_MAX)
            attempt += 1
            beat.idle()
            if self._stop.wait(delay):
                break
        self._drain(beat)
        self._set_state("stopped")

    def _stream_once(self, beat: Heartbeat, lost: bool) -> tuple[bool, str | None]:
        """Read one attempt until it ends: (whether frames came, how it ended: "" the
        stream's end, a detail for a failure, None for a stop)."""
        with self._cond:
            self._ended = None
            self._receiving = False
            if self._pending is not None:  # left from the last attempt: never taken
                self.dropped += 1
            self._pending = None
            self._last_frame = time.monotonic()
        capture = Capture(self.name, self._opener, self._on_frame, self._on_end)
        capture.start()
        streamed = False
        try:
            while True:
                beat.idle()
                with self._cond:
                    self._cond.wait_for(self._has_work, timeout=0.5)
                    outcomes, self._outcomes = self._outcomes, []
                    waiting = None
                    if not self._in_flight and self._pending is not None:
                        waiting, self._pending = self._pending, None
                    ended, quiet = self._ended, time.monotonic() - self._last_frame
                    receiving = self._receiving
                beat.beat()
                for outcome in outcomes:
                    self._publish(outcome)
                if self._stop.is_set():
                    return streamed, None
                if receiving and not streamed:
                    streamed = True
                    if lost:
                        self.reconnects += 1
                    self.decoder = capture.detail
                    self._set_state("streaming", self.decoder)
                if waiting is not None:
                    self._send(waiting)
                    waiting = None  # its decoder buffer is not held while the model runs
                if ended is not None:
                    return streamed, ended
                if quiet > self._stall_after:
                    return streamed, f"no frame for {self._stall_after:g} s"
        finally:
            capture.abandon()

    def _has_work(self) -> bool:
        return (
            self._stop.is_set()
            or bool(self._outcomes)
            or (self._pending is not None and not self._in_flight)
            or self._ended is not None
            or self._receiving != (self.state == "streaming")
        )

    def _send(self, waiting: Waiting) -> None:
        """Convert the frame (its time counts in its preprocessing) and submit it."""
        try:
            decoded = waiting.captured.decoded()
            frame = Frame(decoded, waiting.index, waiting.ts, waiting.mono)
            request = self._to_request(decoded, f"{self.name}:{frame.index}")
        except Exception as exc:  # noqa: BLE001 - e.g. a model swapped for one of another kind
            self.errors += 1
            log.warning("source %s: frame %d not usable: %s", self.name, waiting.index, exc)
            return
        reply = FrameReply(self._answered, frame)
        with self._cond:
            self._in_flight = True
        if not self._submit(Job(request, None, reply)):
            with self._cond:
                self._in_flight = False
            self.dropped += 1  # the queue is full of requests: they go first

    def _publish(self, outcome: Outcome) -> None:
        with self._cond:
            self._in_flight = False
        frame, result = outcome.frame, outcome.result
        if result is None:
            self.errors += 1
            detail = outcome.error.detail if outcome.error is not None else "no answer"
            log.warning("source %s: frame %d failed: %s", self.name, frame.index, detail)
            return
        self.processed += 1
        publish, changed = self._changes.decide(result, time.monotonic())
        if not publish:
            return
        latency = (time.monotonic() - frame.mono) * 1000
        self._latencies.append(latency)
        doc = {
            **result,
            "source": self.name,
            "frame_ts": _iso(frame.ts),
            "frame_index": frame.index,
            "latency_ms": {**result.get("latency_ms", {}), "capture_to_publish": round(latency, 3)},
        }
        self._emitted("prediction", partial(self._emit.prediction, self.name, doc))
        if changed and self.config.snapshot:
            buf = io.BytesIO()
            frame.decoded.image.convert("RGB").save(buf, format="JPEG", quality=SNAPSHOT_QUALITY)
            self._emitted("snapshot", partial(self._emit.snapshot, self.name, buf.getvalue()))

    def _drain(self, beat: Heartbeat) -> None:
        """Publish the answer of a frame still in the pipeline when stopping (bounded)."""
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            with self._cond:
                if not self._in_flight:
                    return
                self._cond.wait(0.1)
                outcomes, self._outcomes = self._outcomes, []
            beat.beat()
            for outcome in outcomes:
                self._publish(outcome)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
