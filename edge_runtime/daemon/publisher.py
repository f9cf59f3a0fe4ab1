"""Pumps the outbox to the broker, in order, deleting each message only once acknowledged.

Rows handed to the MQTT client stay in the outbox until acknowledged; the client itself
resends them after a reconnect, and a restart of the daemon sends them again from the
outbox. All bookkeeping happens on this thread; the transport's callbacks only post message ids
and connection changes here (so no lock is held across a call into the MQTT library).
The outbox's checkpoints (an fsync, which an SD card can take a tenth of a second over)
run on a thread of their own, so no answer waits behind one on its way out.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from edge_runtime.daemon.outbox import Outbox
from edge_runtime.errors import TransportError

log = logging.getLogger(__name__)

#: publish(topic, payload, qos, correlation) -> message id, or None when offline
PublishFn = Callable[[str, bytes, int, Optional[bytes]], Optional[int]]


class Publisher:
    def __init__(self, outbox: Outbox, publish: PublishFn, *, window: int = 50) -> None:
        self.outbox = outbox
        self._publish = publish
        self.window = window
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight: dict[int, int] = {}
        self._early: set[int] = set()
        self._last_seq = 0
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._checkpoint_due = threading.Event()
        self._checkpoints = threading.Thread(
            target=self._checkpoint_loop, name="outbox-checkpoint", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._checkpoints.start()

    def poke(self) -> None:
        self._wake.set()

    def on_published(self, mid: int) -> None:
        self._acks.put(mid)
        self._wake.set()

    def on_connection(self, up: bool) -> None:
        # Nothing to reset: the MQTT client resends every message it accepted and has no
        # acknowledgement for on reconnect (same message id), so the map stays valid.
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._checkpoint_due.set()
        self._thread.join(5)
        self._checkpoints.join(5)

    def _drain_acks(self) -> None:
        """Delete what the broker acknowledged, in one transaction."""
        done = []
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is None:
                if len(self._early) < 10000:
                    self._early.add(mid)
            else:
                done.append(seq)
        self.outbox.remove_many(done)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            self._drain_acks()
            if self.outbox.checkpoint_due:
                self._checkpoint_due.set()
            room = self.window - len(self._inflight)
            if room <= 0:
                continue
            for entry in self.outbox.after(self._last_seq, room):
                try:
                    mid = self._publish(entry.topic, entry.payload, entry.qos, entry.correlation)
                except TransportError as exc:
                    log.error("dropping a message that cannot be sent: %s", exc)
                    self.outbox.remove(entry.seq)
                    continue
                if mid is None:
                    break
                self._last_seq = entry.seq
                if mid in self._early:
                    self._early.discard(mid)
                    self.outbox.remove(entry.seq)
                else:
                    self._inflight[mid] = entry.seq
                self._wake.set()

    def _checkpoint_loop(self) -> None:
        while True:
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if self._stop.is_set():
                return
            try:
                self.outbox.checkpoint()
            except Exception:  # noqa: BLE001 - the next one may work; answers go on
                log.exception("outbox checkpoint failed")
