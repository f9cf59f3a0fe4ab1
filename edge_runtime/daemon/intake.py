"""Incoming messages, from the MQTT client's thread to a worker of their own.

The MQTT client's callback only converts a message and hands it over here; everything
that parses, decodes or stores runs on this worker. Whatever fails while one message is
handled is handed back as that message's failure (``fail``), so a hostile payload costs
one error answer and never the thread that receives all the others. The hand-over is
bounded: when the worker falls behind, the network thread waits (TCP back-pressure on
the broker), as it did when it queued requests itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, cast

from edge_runtime.daemon.supervisor import Heartbeats, unsupervised
from edge_runtime.transport.mqtt import Message

log = logging.getLogger(__name__)

_STOP = object()


class Intake:
    """A bounded queue of messages and the one worker that handles them in order."""

    def __init__(
        self,
        handle: Callable[[Message], None],
        fail: Callable[[Message, Exception], None],
        *,
        size: int,
        bound: float,
        heartbeats: Heartbeats = unsupervised,
    ) -> None:
        """``bound``: the longest the handling of one message may take before the
        worker counts as stuck."""
        self._handle = handle
        self._fail = fail
        self._queue: queue.Queue[Message | object] = queue.Queue(maxsize=max(1, size))
        self._beat = heartbeats("requests", bound)
        self._thread = threading.Thread(
            target=self._beat.guard(self._run), name="requests", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def put(self, message: Message, wait: float) -> bool:
        """Called from the MQTT client's thread: queue ``message``, waiting up to ``wait``
        seconds for room; False when the worker stayed behind that long."""
        try:
            self._queue.put(message, timeout=max(wait, 0.001))
        except queue.Full:
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Handle what was handed over already, then end the worker."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.error("the request worker is not taking messages; not waiting for it")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        beat = self._beat
        while True:
            beat.idle()
            item = self._queue.get()
            beat.beat()
            if item is _STOP:
                return
            message = cast(Message, item)
            try:
                self._handle(message)
            except Exception as exc:  # noqa: BLE001 - one message must not end the worker
                try:
                    self._fail(message, exc)
                except Exception:  # noqa: BLE001 - nor can its error answer (a full disk)
                    log.exception("no error answer for a message on %s", message.topic)
