"""Incoming messages, from the MQTT client's thread to workers of their own.

The MQTT client's callback only converts a message and hands it over here; everything
that parses, decodes or stores runs on a worker. Whatever fails while one message is
handled is handed back as that message's failure (``fail``), so a hostile payload costs
one error answer and never the thread that receives all the others.

Two lanes, each with its worker. The request lane is small (``size`` messages) and its
worker handles messages in order; each may wait for room in the pipeline until
``arrived`` plus the caller's wait, counted from its arrival, so messages that waited
here behind others have no wait left and the worker is never behind by more than one
wait. A request (``refusable``) that finds the request lane full for ``GRACE`` (or at
all, right after one that did) goes to the refusal lane, whose worker only answers it
(``refuse``: queue_full): with QoS 0 the broker pushes without flow control, and such a
request must get its error, neither be dropped without a word nor hold the network
thread one wait each behind the others.
Other messages (model updates, chunks) are never refused: they wait for the request
lane (TCP back-pressure on the broker). Both lanes are bounded in messages and in
payload bytes; ``put`` returns False only when a lane took nothing for the caller's
wait: its worker is stuck, which the supervisor names.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

from edge_runtime.daemon.supervisor import Heartbeat, Heartbeats, unsupervised
from edge_runtime.transport.mqtt import Message

log = logging.getLogger(__name__)

#: Seconds the MQTT thread waits for room in the request lane before it hands a request
#: to the refusal lane: the time the worker takes for a message that finds room.
GRACE = 0.05
#: Messages the refusal lane holds, at most.
REFUSALS = 256


class Lane:
    """A FIFO of (message, arrival time) bounded in messages and in payload bytes (one
    message always fits an empty lane); None stands for the end."""

    def __init__(self, count: int, max_bytes: int) -> None:
        self._items: collections.deque[tuple[Message | None, float]] = collections.deque()
        self._count = max(1, count)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._changed = threading.Condition()

    def put(self, message: Message | None, wait: float) -> bool:
        """Add ``message``, waiting up to ``wait`` s for room; False when none came."""
        size = len(message.payload) if message is not None else 0
        deadline = time.monotonic() + wait
        with self._changed:
            while self._items and (
                len(self._items) >= self._count or self._bytes + size > self._max_bytes
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            self._items.append((message, time.monotonic()))
            self._bytes += size
            self._changed.notify_all()
        return True

    def get(self) -> tuple[Message | None, float]:
        with self._changed:
            while not self._items:
                self._changed.wait()
            message, arrived = self._items.popleft()
            self._bytes -= len(message.payload) if message is not None else 0
            self._changed.notify_all()
        return message, arrived


class Intake:
    """The request lane and the refusal lane, and the worker of each."""

    def __init__(
        self,
        handle: Callable[[Message, float], None],
        fail: Callable[[Message, Exception], None],
        refuse: Callable[[Message, float], None],
        *,
        size: int,
        max_bytes: int,
        bound: float,
        heartbeats: Heartbeats = unsupervised,
    ) -> None:
        """``handle(message, arrived)`` (``arrived``: ``time.monotonic()`` when it was
        handed over) and ``refuse(message, arrived)`` run on the lanes' workers; ``bound``: the
        longest either may take for one message before its worker counts as stuck.
        ``max_bytes``: the payload bytes each lane holds."""
        self._fail = fail
        self._requests = Lane(size, max_bytes)
        self._refusals = Lane(REFUSALS, max_bytes)
        self._overflowing = False  # the last request went to the refusals (MQTT thread's)
        self._threads = [
            self._worker("requests", bound, self._requests, handle, heartbeats),
            self._worker("refusals", bound, self._refusals, refuse, heartbeats),
        ]

    def _worker(
        self,
        name: str,
        bound: float,
        lane: Lane,
        handle: Callable[[Message, float], None],
        heartbeats: Heartbeats,
    ) -> threading.Thread:
        beat = heartbeats(name, bound)

        def run() -> None:
            self._serve(lane, beat, handle)

        return threading.Thread(target=beat.guard(run), name=name, daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def put(self, message: Message, wait: float, *, refusable: bool = False) -> bool:
        """Called from the MQTT client's thread: hand ``message`` over, waiting up to
        ``wait`` seconds for room; a ``refusable`` one waits ``GRACE`` at most for the
        request lane and then goes to the refusal lane. False when no lane took it."""
        if not refusable:
            return self._requests.put(message, max(wait, 0.001))
        # after a request found no room, the next ones do not wait for it either: the
        # request worker waits for the pipeline, not for its next message
        grace = 0.0 if self._overflowing else min(GRACE, max(wait, 0.001))
        if self._requests.put(message, grace):
            self._overflowing = False
            return True
        self._overflowing = True
        return self._refusals.put(message, max(wait, 0.001))

    def stop(self, timeout: float = 5.0) -> None:
        """Handle what was handed over already, then end the workers."""
        deadline = time.monotonic() + timeout
        for lane, thread in zip((self._requests, self._refusals), self._threads):
            if not lane.put(None, max(0.001, deadline - time.monotonic())):
                log.error("the %s worker is not taking messages; not waiting for it", thread.name)
                continue
            thread.join(max(0.001, deadline - time.monotonic()))

    def _serve(self, lane: Lane, beat: Heartbeat, handle: Callable[[Message, float], None]) -> None:
        while True:
            beat.idle()
            message, arrived = lane.get()
            beat.beat()
            if message is None:
                return
            try:
                handle(message, arrived)
            except Exception as exc:  # noqa: BLE001 - one message must not end the worker
                try:
                    self._fail(message, exc)
                except Exception:  # noqa: BLE001 - nor can its error answer (a full disk)
                    log.exception("no error answer for a message on %s", message.topic)
