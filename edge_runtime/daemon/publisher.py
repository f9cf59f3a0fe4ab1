"""Everything the device sends leaves through here: straight from memory while the broker
keeps up, through the on-disk outbox when it does not.

``send`` hands messages to the MQTT client at once when the broker is reachable and
nothing older waits in the outbox, and keeps them in memory until the broker
acknowledges them (PUBACK). Only a message still unacknowledged after ``SPILL_AFTER``
seconds (the broker is slow or gone) is written to the outbox, and a message that cannot
be handed over (offline, a backlog to keep order behind, ``hold`` messages already held)
goes there directly. A connected device serving requests thus writes nothing to its SD card per
answer, where storing every answer and deleting it again cost about 12 kB of writes.

``on_safe`` is called once every message of a ``send`` is acknowledged by the broker or
stored in the outbox. The daemon acknowledges a request only then, so a request the
broker considers done always has its answer either at the broker or on disk; a power cut
before that leaves the request unacknowledged and the broker delivers it again.

Outbox rows are published in insertion order and deleted once acknowledged; the client
itself resends what it was handed after a reconnect (same message id), and a restart of
the daemon sends the outbox again. Bookkeeping happens on this thread, apart from the few
lines of ``send`` that register a message id; the transport's callbacks only post
message ids and connection changes here (so no lock is held across a call into the MQTT
library). The outbox's checkpoints (an fsync, which an SD card can take a tenth of a
second over) run on a thread of their own, so no answer waits behind one on its way out.

When the state folder is full (``Outbox.disk_full``), what would go to the outbox waits
in memory instead (up to ``KEEP_IN_MEMORY`` messages) and goes out behind the outbox's
rows; ``on_safe`` then waits for the broker's acknowledgement, as nothing is on disk.
Held messages are not spilled, acknowledged rows are still deleted (a failed delete is
tried again, never forgotten: a row left behind would be sent again after a restart),
and once ``Outbox.recover`` finds room the messages waiting in memory are stored and the
outbox carries on, without a restart. A message that fits neither on disk nor in memory
is refused (``StorageError``) and counted in ``not_kept``: its request stays
unacknowledged, and the broker delivers it again.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from edge_runtime.daemon.outbox import Entry, Outbox, Outgoing
from edge_runtime.daemon.supervisor import Heartbeats, unsupervised
from edge_runtime.errors import StorageError, TransportError

log = logging.getLogger(__name__)

#: publish(topic, payload, qos, correlation) -> message id, or None when offline
PublishFn = Callable[[str, bytes, int, Optional[bytes]], Optional[int]]
#: Seconds a message sent from memory may wait for the broker's acknowledgement before
#: it is written to the outbox (a broker on the LAN answers in about a millisecond).
SPILL_AFTER = 1.0
#: Most messages held in memory unacknowledged: a burst of answers (a batch can carry
#: dozens) fits; beyond it, messages go through the outbox. A few hundred kB at most.
HOLD = 500
#: Most messages waiting in memory for their turn while the state folder is full.
KEEP_IN_MEMORY = 2000
#: Seconds between looks at a full state folder for room.
RECOVER_EVERY = 1.0
#: Seconds an acknowledgement that came before its message id was registered stays
#: valid (it comes microseconds early; message ids only repeat after 65,535 messages).
EARLY_TTL = 5.0


@dataclass(eq=False)
class _Held:
    """The messages of one ``send`` that went out from memory, until each is
    acknowledged or stored."""

    on_safe: Callable[[], None] | None
    since: float
    waiting: dict[int, Outgoing] = field(default_factory=dict)  # message id -> message
    open: bool = True  # ``send`` may still add to it
    queued: int = 0  # messages in the memory queue, not yet handed to the client

    @property
    def done(self) -> bool:
        return not self.open and not self.waiting and not self.queued


class Publisher:
    def __init__(
        self,
        outbox: Outbox,
        publish: PublishFn,
        *,
        window: int = 50,
        hold: int = HOLD,
        spill_after: float = SPILL_AFTER,
        heartbeats: Heartbeats = unsupervised,
    ) -> None:
        self.outbox = outbox
        self._publish = publish
        self.window = window  # outbox rows handed to the client and unacknowledged
        self.hold = hold
        self.spill_after = spill_after
        self.spilled = 0  # messages stored because the broker was slow to acknowledge them
        self.not_kept = 0  # refused: the state folder was full and so was the memory queue
        # what waits in memory for its turn while the state folder is full, oldest first
        self._queued: collections.deque[tuple[Outgoing, _Held]] = collections.deque()
        self._unremoved: list[int] = []  # acknowledged rows a full disk kept us from deleting
        self._next_recover = 0.0
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # message id -> what it carries: an outbox row (seq) or a held send
        self._books = threading.Lock()
        self._inflight: dict[int, int] = {}
        self._held: dict[int, _Held] = {}
        # message id -> when it was acknowledged before it was registered
        self._early: dict[int, float] = {}
        self._handed: set[int] = set()  # outbox rows the client already has (spilled)
        # QoS 0 rows handed to the client: it drops them, unsent, when the connection
        # breaks (nothing to resend), so a reconnect settles them
        self._inflight_qos0: set[int] = set()
        self._reconnected = threading.Event()
        self._last_seq = 0
        # stuck: a round of the outbox, or one checkpoint, past a minute (a failing disk)
        self._beat = heartbeats("publisher", 60.0)
        self._thread = threading.Thread(
            target=self._beat.guard(self._run), name="publisher", daemon=True
        )
        self._checkpoint_due = threading.Event()
        self._checkpoint_beat = heartbeats("outbox-checkpoint", 60.0)
        self._checkpoints = threading.Thread(
            target=self._checkpoint_beat.guard(self._checkpoint_loop),
            name="outbox-checkpoint",
            daemon=True,
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
        # The MQTT client resends every QoS 1 message it accepted and has no
        # acknowledgement for on reconnect (same message id), so those entries stay valid.
        if up:
            self._reconnected.set()
        self._wake.set()

    def pending(self) -> int:
        """Messages not yet acknowledged by the broker: in the outbox or held in memory."""
        return len(self.outbox) + self.in_memory()

    def in_memory(self) -> int:
        """Messages kept in memory only: handed to the client and unacknowledged, or
        waiting for their turn while the state folder is full."""
        with self._books:
            return len(self._held) + len(self._queued)

    def settle(self, deadline: float, connected: Callable[[], bool]) -> None:
        """Wait until the broker acknowledged everything, the connection dropped or the
        ``time.monotonic()`` deadline passed."""
        while self.pending() and connected() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)

    def send(self, messages: Sequence[Outgoing], on_safe: Callable[[], None] | None = None) -> None:
        """Send ``messages`` in order: from memory when the broker can take them now,
        else through the outbox. ``on_safe`` runs (here, or later on the publisher's
        thread) once each is acknowledged by the broker or stored.

        Raises:
            sqlite3.Error: the outbox cannot store what has to go there.
        """
        group = _Held(on_safe, time.monotonic())
        store: list[Outgoing] = []
        for m in messages:
            mid = self._hand_over(m) if not store and self._direct() else None
            if mid is None:
                store.append(m)
            elif mid >= 0:
                with self._books:
                    if not self._take_early(mid):
                        group.waiting[mid] = m
                        self._held[mid] = group
        stored = False
        try:
            if store:
                self._store(store, group)
                self._wake.set()
            stored = True
        finally:
            with self._books:
                group.open = False
                if not stored:  # its requests stay unacknowledged: delivered again
                    group.on_safe = None
                done = group.done
        if done and group.on_safe is not None:
            group.on_safe()

    def _store(self, store: list[Outgoing], group: _Held) -> None:
        """Into the outbox; while the state folder is full, into the memory queue."""
        if not self.outbox.disk_full:
            try:
                self.outbox.add_many(store)
                return
            except StorageError as exc:
                log.error("the state folder is full; messages wait in memory: %s", exc)
        with self._books:
            if len(self._queued) + len(store) > KEEP_IN_MEMORY:
                self.not_kept += len(store)
                raise StorageError(
                    f"{len(store)} message(s) not kept: the state folder is full and "
                    f"{len(self._queued)} already wait in memory"
                )
            group.queued += len(store)
            self._queued.extend((m, group) for m in store)

    def stop(self) -> None:
        """Stop the threads; what is still held in memory is stored in the outbox."""
        self._stop.set()
        self._wake.set()
        self._checkpoint_due.set()
        self._thread.join(5)
        self._checkpoints.join(5)
        self._drain_acks()
        try:
            self._store_queued()
            self._spill(everything=True)
        except StorageError as exc:
            log.error(
                "%d message(s) not kept at shutdown (their requests are delivered again): %s",
                self.in_memory(),
                exc,
            )

    # -- the publisher's thread ---------------------------------------------------------
    def _direct(self) -> bool:
        """True when a message may go out from memory: nothing waits in the outbox
        (order) and fewer than ``hold`` messages are held."""
        if len(self.outbox):
            return False
        with self._books:
            return not self._queued and len(self._held) < self.hold

    def _hand_over(self, m: Outgoing | Entry) -> int | None:
        """The message id the client gave ``m``, None when offline, -1 when the message
        can never be sent (logged and dropped)."""
        try:
            return self._publish(m.topic, m.payload, m.qos, m.correlation)
        except TransportError as exc:
            log.error("dropping a message that cannot be sent: %s", exc)
            return -1

    def _drain_acks(self) -> None:
        """Settle what the broker acknowledged: outbox rows deleted in one transaction,
        held sends completed."""
        done, safe = [], []
        with self._books:
            while True:
                try:
                    mid = self._acks.get_nowait()
                except queue.Empty:
                    break
                seq = self._inflight.pop(mid, None)
                self._inflight_qos0.discard(mid)
                group = self._held.pop(mid, None)
                if seq is not None:
                    done.append(seq)
                elif group is not None:
                    del group.waiting[mid]
                    if group.done:
                        safe.append(group)
                else:
                    self._note_early(mid)
        _call_on_safe(safe)
        self._remove(done)

    def _note_early(self, mid: int) -> None:
        """An acknowledgement of a message id not registered (yet); the caller holds the
        books. Most are registered a moment later; the rest are acknowledgements of what
        the transport sent itself (status, model state) and go stale."""
        now = time.monotonic()
        if len(self._early) >= 1000:
            self._early = {m: t for m, t in self._early.items() if now - t < EARLY_TTL}
        self._early[mid] = now

    def _take_early(self, mid: int) -> bool:
        """True when ``mid`` was acknowledged just before it was registered; the caller
        holds the books. A stale entry is the acknowledgement of an earlier message that
        had the same id (ids wrap after 65,535): it says nothing about this one."""
        at = self._early.pop(mid, None)
        return at is not None and time.monotonic() - at < EARLY_TTL

    def _remove(self, seqs: list[int]) -> None:
        """Delete acknowledged rows, with those a full disk kept back before."""
        before = self._unremoved
        todo = before + seqs
        try:
            self.outbox.remove_many(todo)
        except StorageError as exc:
            # tried again on the next round; the pump has passed them: never sent again
            if not before:
                log.warning("%d acknowledged message(s) not deleted yet: %s", len(todo), exc)
            self._unremoved = todo
        else:
            self._unremoved = []

    def _spill(self, everything: bool = False) -> None:
        """Store the held sends waiting longer than ``spill_after`` (all of them with
        ``everything``) in the outbox, as rows the client already has."""
        cutoff = time.monotonic() - self.spill_after
        with self._books:
            groups = {
                id(g): g
                for g in self._held.values()
                if not g.open and (everything or g.since <= cutoff)
            }
            if not groups or self.outbox.disk_full:  # the client has them: they stay held
                return
            moving = [(mid, m) for g in groups.values() for mid, m in g.waiting.items()]
        seqs = self.outbox.add_many([m for _, m in moving])
        with self._books:
            for (mid, m), seq in zip(moving, seqs):
                self._held.pop(mid, None)
                if seq is None or m.qos == 0:
                    # telemetry over the cap; or QoS 0, which the client drops unsent
                    # when the connection breaks: the pump sends the row again
                    continue
                self._inflight[mid] = seq
                self._handed.add(seq)
            for g in groups.values():
                g.waiting.clear()
            self.spilled += len(moving)
        log.warning(
            "%d message(s) unacknowledged by the broker after %.1f s; kept in the outbox",
            len(moving),
            self.spill_after,
        )
        _call_on_safe(list(groups.values()))

    def _settle_qos0(self) -> None:
        """After a reconnect, QoS 0 rows still unconfirmed were dropped by the client
        with the old connection or went out with it; either way they are done."""
        with self._books:
            done = [self._inflight.pop(mid) for mid in self._inflight_qos0 if mid in self._inflight]
            self._inflight_qos0.clear()
        self._remove(done)

    def _recover(self) -> None:
        """While the state folder is full, look for room now and then; once there is,
        store what waits in memory and carry on through the outbox."""
        if not self.outbox.disk_full or time.monotonic() < self._next_recover:
            return
        self._next_recover = time.monotonic() + RECOVER_EVERY
        if self.outbox.recover():
            moved = self._store_queued()
            log.warning("the outbox stores again; %d message(s) moved there from memory", moved)

    def _store_queued(self) -> int:
        """Store the memory queue in the outbox (its groups count as safe); how many."""
        with self._books:
            queued = list(self._queued)
        if not queued:
            return 0
        self.outbox.add_many([m for m, _ in queued])
        safe = []
        with self._books:
            for _ in queued:
                _, group = self._queued.popleft()
                group.queued -= 1
                if group.done:
                    safe.append(group)
        _call_on_safe(list({id(g): g for g in safe}.values()))
        return len(queued)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._beat.idle()
            self._wake.wait(0.2)
            self._wake.clear()
            self._beat.beat()
            try:
                self._drain_acks()
                if self._reconnected.is_set():
                    self._reconnected.clear()
                    self._settle_qos0()
                self._recover()
                self._spill()
                if self.outbox.checkpoint_due:
                    self._checkpoint_due.set()
                self._pump()
            except Exception:  # noqa: BLE001 - a full or failing disk: held messages stay held
                log.exception("the outbox failed; trying again in a second")
                self._stop.wait(1.0)

    def _pump(self) -> None:
        """Hand the outbox's next rows to the client, up to the window; then what waits
        in memory."""
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        entries = self.outbox.after(self._last_seq, room)
        for entry in entries:
            with self._books:
                if entry.seq in self._handed:  # a spilled message: the client has it
                    self._handed.discard(entry.seq)
                    self._last_seq = entry.seq
                    continue
            mid = self._hand_over(entry)
            if mid is None:
                break
            self._last_seq = entry.seq
            if mid < 0:
                self._remove([entry.seq])
                continue
            with self._books:
                early = self._take_early(mid)
                if not early:
                    self._inflight[mid] = entry.seq
                    if entry.qos == 0:
                        self._inflight_qos0.add(mid)
            if early:
                self._remove([entry.seq])
            self._wake.set()
        else:
            if len(entries) < room:  # the outbox is done: its turn for the memory queue
                self._pump_queued()

    def _pump_queued(self) -> None:
        """Hand messages waiting in memory to the client, as many as ``hold`` allows."""
        while True:
            with self._books:
                if not self._queued or len(self._held) >= self.hold:
                    return
                m, group = self._queued[0]
            mid = self._hand_over(m)
            if mid is None:
                return
            safe = False
            with self._books:
                self._queued.popleft()
                group.queued -= 1
                if mid >= 0 and not self._take_early(mid):
                    group.waiting[mid] = m
                    self._held[mid] = group
                safe = group.done
            if safe:
                _call_on_safe([group])

    def _checkpoint_loop(self) -> None:
        while True:
            self._checkpoint_beat.idle()
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            self._checkpoint_beat.beat()
            if self._stop.is_set():
                return
            try:
                self.outbox.checkpoint()
            except Exception:  # noqa: BLE001 - the next one may work; answers go on
                log.exception("outbox checkpoint failed")


def _call_on_safe(groups: list[_Held]) -> None:
    for g in groups:
        if g.on_safe is not None:
            try:
                g.on_safe()
            except Exception:  # noqa: BLE001 - one failing callback must not stop sending
                log.exception("acknowledging a request failed")
