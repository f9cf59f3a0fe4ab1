"""The on-disk outbox: order, acknowledgement, restart, the cap that spares answers,
checkpoints kept off the writers; the publisher that sends from memory while the broker
keeps up and through the outbox when it does not."""

from __future__ import annotations

import sqlite3
import time

import pytest
from support.smalldisk import fill, small_disk

from edge_runtime.daemon.outbox import ANSWER, CHECKPOINT_EVERY, TELEMETRY, Outbox, Outgoing
from edge_runtime.daemon.publisher import Publisher
from edge_runtime.errors import StorageError


def test_fifo_order_and_remove(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    seqs = [
        box.add(ANSWER, "t", f"m{i}".encode(), correlation=b"c" if i == 1 else None)
        for i in range(5)
    ]
    entries = box.after(0, 10)
    assert [e.payload for e in entries] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert entries[1].correlation == b"c" and entries[0].correlation is None
    assert [e.seq for e in box.after(seqs[2], 10)] == seqs[3:]
    box.remove(seqs[0])
    box.remove(seqs[0])  # twice is harmless
    assert len(box) == 4


def test_survives_a_restart(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    box.add(ANSWER, "a", b"1")
    box.add(TELEMETRY, "t", b"2", qos=0)
    size = box.size_bytes
    box.close()
    again = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    assert [(e.topic, e.payload, e.qos) for e in again.after(0, 10)] == [
        ("a", b"1", 1),
        ("t", b"2", 0),
    ]
    assert len(again) == 2 and again.size_bytes == size


def test_over_the_cap_oldest_telemetry_goes_first_and_answers_never(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=64 * 1024)
    box.add(TELEMETRY, "t", b"old" + bytes(10_000), qos=0)
    for i in range(4):
        box.add(ANSWER, "a", bytes(10_000) + str(i).encode())
    box.add(TELEMETRY, "t", b"new" + bytes(10_000), qos=0)
    # full now: a new answer pushes out the oldest telemetry, never an answer
    box.add(ANSWER, "a", bytes(10_000))
    kinds = [(e.kind, e.payload[:3]) for e in box.after(0, 100)]
    assert (TELEMETRY, b"old") not in kinds
    assert sum(k == ANSWER for k, _ in kinds) == 5
    assert box.dropped_telemetry == 1
    # answers are kept even past the cap; telemetry that cannot fit is refused
    for _ in range(3):
        box.add(ANSWER, "a", bytes(10_000))
    assert sum(e.kind == ANSWER for e in box.after(0, 100)) == 8
    assert box.add(TELEMETRY, "t", bytes(10_000), qos=0) is None
    assert all(e.kind == ANSWER for e in box.after(0, 100))


def test_remove_many_in_one_go_skips_the_unknown_and_keeps_the_books(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    seqs = [box.add(ANSWER, "t", bytes(100 + i)) for i in range(6)]
    kept = box.size_bytes - sum(100 + i + 1 + 64 for i in (0, 2, 5))
    box.remove_many([seqs[0], seqs[2], seqs[5], 9999, seqs[0]])
    assert [e.seq for e in box.after(0, 10)] == [seqs[1], seqs[3], seqs[4]]
    assert len(box) == 3 and box.size_bytes == kept
    box.remove_many([])
    box.close()
    again = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    assert len(again) == 3 and again.size_bytes == kept


def test_add_many_stores_in_order_in_one_transaction_or_not_at_all(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    box.add(ANSWER, "a", b"before")
    seqs = box.add_many([Outgoing(ANSWER, "a", f"m{i}".encode(), 1, b"c") for i in range(5)])
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [e.payload for e in box.after(0, 10)] == [b"before", b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert box._commits == 2  # one for the single add, one for the five
    books = (len(box), box.size_bytes)
    broken = Outgoing(None, "a", b"z")  # type: ignore[arg-type] # breaks a NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        box.add_many([Outgoing(ANSWER, "a", b"x"), Outgoing(ANSWER, "a", b"y"), broken])
    assert (len(box), box.size_bytes) == books
    assert [e.payload for e in box.after(seqs[-1], 10)] == []
    assert box.add_many([]) == []


def _wal_frames(path):
    """Frames in the write-ahead log, read from its size (a 32-byte header, then 4 KiB
    pages with 24-byte frame headers); the log is rewritten, never shrunk, after a
    checkpoint, so its size shows the most frames it ever held."""
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_writers_never_checkpoint_and_checkpoint_copies_the_log(tmp_path):
    path = tmp_path / "o.db"
    box = Outbox(path, max_bytes=64 << 20)
    payload = bytes(4000)  # about a page per row
    for _ in range(1500):  # SQLite's automatic checkpoint would run at 1000 pages
        box.remove(box.add(ANSWER, "t", payload))
    # the log kept growing: no add or remove copied it back and started it over
    assert _wal_frames(path) > 1500
    db_before = path.stat().st_size
    assert box.checkpoint()  # due: far more than CHECKPOINT_EVERY commits
    assert not box.checkpoint()  # and not again until more commits piled up
    # the pages reached the database file, and a fresh reader finds the log copied
    assert path.stat().st_size > db_before
    probe = sqlite3.connect(str(path))
    busy, frames, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    probe.close()
    assert busy == 0 and frames == copied
    for _ in range(CHECKPOINT_EVERY - 1):
        box.add(TELEMETRY, "t", b"x", qos=0)
    assert not box.checkpoint()
    box.add(TELEMETRY, "t", b"x", qos=0)
    assert box.checkpoint()
    assert box.checkpoint(force=True)
    box.close()
    assert not path.with_name("o.db-wal").exists() or _wal_frames(path) == 0
    assert len(Outbox(path, max_bytes=64 << 20)) == CHECKPOINT_EVERY


class FakeLink:
    def __init__(self) -> None:
        self.up = False
        self.sent = []
        self.mid = 0

    def publish(self, topic, payload, qos, correlation):
        if not self.up:
            return None
        self.mid += 1
        self.sent.append((self.mid, payload))
        return self.mid


def wait(cond, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.01)
    return cond()


def test_publisher_sends_in_order_when_connected_and_deletes_only_after_ack(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    link = FakeLink()
    pub = Publisher(box, link.publish, window=3)
    pub.start()
    try:
        for i in range(5):
            box.add(ANSWER, "a", str(i).encode())
        pub.poke()
        assert not wait(lambda: link.sent, 0.3)  # offline: nothing sent, nothing lost
        link.up = True
        pub.on_connection(True)
        assert wait(lambda: len(link.sent) == 3)  # window of unacknowledged messages
        assert [p for _, p in link.sent] == [b"0", b"1", b"2"]
        assert len(box) == 5
        for mid, _ in list(link.sent):
            pub.on_published(mid)
        assert wait(lambda: len(link.sent) == 5)
        assert [p for _, p in link.sent] == [b"0", b"1", b"2", b"3", b"4"]
        pub.on_published(4)
        pub.on_published(5)
        assert wait(lambda: len(box) == 0)
    finally:
        pub.stop()


def test_answers_go_out_while_a_checkpoint_is_stuck_on_slow_storage(tmp_path, monkeypatch):
    """A checkpoint fsyncs the database; on an SD card that can take a long while. It
    runs beside the publisher, so what is added meanwhile is sent at once."""
    import threading

    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    in_checkpoint, release = threading.Event(), threading.Event()
    real = box.checkpoint

    def slow_checkpoint(force=False):
        in_checkpoint.set()
        release.wait(10)
        return real(force)

    monkeypatch.setattr(box, "checkpoint", slow_checkpoint)
    link = FakeLink()
    link.up = True
    pub = Publisher(box, link.publish, window=1000)
    pub.start()
    try:
        for i in range(CHECKPOINT_EVERY):
            box.add(ANSWER, "a", str(i).encode())
        pub.poke()
        assert in_checkpoint.wait(5), "no checkpoint was started once one was due"
        assert wait(lambda: len(link.sent) == CHECKPOINT_EVERY)
        box.add(ANSWER, "a", b"during")
        pub.poke()
        assert wait(lambda: len(link.sent) > CHECKPOINT_EVERY, 2.0), "it waited for the checkpoint"
        assert link.sent[-1][1] == b"during" and not release.is_set()
    finally:
        release.set()
        pub.stop()


def _publisher(tmp_path, *, up=True, spill_after=60.0):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    link = FakeLink()
    link.up = up
    pub = Publisher(box, link.publish, window=10, hold=10, spill_after=spill_after)
    pub.start()
    return box, link, pub


def test_while_the_broker_keeps_up_nothing_touches_the_disk(tmp_path):
    """Answers go out from memory; their requests are acknowledged once the broker
    acknowledged the answers, and not before."""
    box, link, pub = _publisher(tmp_path)
    safe = []
    try:
        for i in range(5):
            pub.send([Outgoing(ANSWER, "a", str(i).encode())], lambda i=i: safe.append(i))
        assert [p for _, p in link.sent] == [b"0", b"1", b"2", b"3", b"4"]
        assert len(box) == 0 and pub.pending() == 5 and safe == []
        pub.on_published(2)
        assert wait(lambda: safe == [1])
        for mid in (1, 3, 4, 5):
            pub.on_published(mid)
        assert wait(lambda: sorted(safe) == [0, 1, 2, 3, 4])
        assert pub.pending() == 0
        assert box._db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0] is None
    finally:
        pub.stop()


def test_an_answer_the_broker_does_not_acknowledge_in_time_is_kept_on_disk(tmp_path):
    box, link, pub = _publisher(tmp_path, spill_after=0.2)
    safe = []
    try:
        pub.send(
            [Outgoing(ANSWER, "a", b"x"), Outgoing(ANSWER, "reply", b"x", correlation=b"c")],
            lambda: safe.append(1),
        )
        assert len(link.sent) == 2 and safe == []
        assert wait(lambda: len(box) == 2), "not stored after spill_after"
        assert safe == [1]  # stored: its request may be acknowledged
        assert pub.spilled == 2
        rows = box.after(0, 10)
        assert [(r.topic, r.correlation) for r in rows] == [("a", None), ("reply", b"c")]
        time.sleep(0.3)
        assert len(link.sent) == 2, "the client already has them: not handed over twice"
        pub.on_published(1)
        pub.on_published(2)
        assert wait(lambda: len(box) == 0)
        # and the pump goes on with what comes next
        link.up = False
        pub.send([Outgoing(ANSWER, "a", b"y")])
        link.up = True
        pub.on_connection(True)
        assert wait(lambda: [p for _, p in link.sent][-1:] == [b"y"])
    finally:
        pub.stop()


def test_offline_answers_are_stored_and_later_ones_queue_behind_them(tmp_path):
    box, link, pub = _publisher(tmp_path, up=False)
    safe = []
    try:
        pub.send([Outgoing(ANSWER, "a", b"0")], lambda: safe.append(0))
        assert len(box) == 1 and safe == [0]  # on disk: safe at once
        link.up = True
        pub.send([Outgoing(ANSWER, "a", b"1")], lambda: safe.append(1))
        assert safe == [0, 1] and len(box) == 2, "went ahead of the one waiting on disk"
        pub.on_connection(True)
        assert wait(lambda: [p for _, p in link.sent] == [b"0", b"1"])
        for mid, _ in list(link.sent):
            pub.on_published(mid)
        assert wait(lambda: len(box) == 0)
        pub.send([Outgoing(ANSWER, "a", b"2")])
        assert len(box) == 0 and link.sent[-1][1] == b"2"  # the backlog gone: from memory
    finally:
        pub.stop()


def test_stop_keeps_what_the_broker_has_not_acknowledged(tmp_path):
    box, link, pub = _publisher(tmp_path)
    safe = []
    pub.send([Outgoing(ANSWER, "a", b"0")], lambda: safe.append(0))
    pub.send([Outgoing(ANSWER, "a", b"1")], lambda: safe.append(1))
    pub.on_published(1)
    assert wait(lambda: safe == [0])
    pub.stop()
    assert safe == [0, 1] and [r.payload for r in box.after(0, 10)] == [b"1"]
    box.close()
    assert [r.payload for r in Outbox(tmp_path / "o.db", max_bytes=1 << 20).after(0, 10)] == [b"1"]


def test_an_acknowledgement_before_the_id_is_registered_still_counts(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    pub = Publisher(box, lambda *a: 7, window=10)
    pub.start()
    safe = []
    try:
        pub.on_published(7)  # the broker answered before send() took note of the id
        assert wait(lambda: 7 in pub._early)
        pub.send([Outgoing(ANSWER, "a", b"0")], lambda: safe.append(0))
        assert safe == [0] and pub.pending() == 0 and len(box) == 0
    finally:
        pub.stop()


def test_a_stale_acknowledgement_of_a_reused_id_does_not_count(tmp_path, monkeypatch):
    """The broker acknowledged id 7 of a message the transport sent itself (status,
    model state); ids wrap after 65,535 messages, and a later answer that gets id 7 must
    wait for its own acknowledgement: its request is acknowledged only then."""
    from edge_runtime.daemon import publisher

    monkeypatch.setattr(publisher, "EARLY_TTL", 0.2)
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    pub = Publisher(box, lambda *a: 7, window=10)
    pub.start()
    safe = []
    try:
        pub.on_published(7)
        assert wait(lambda: 7 in pub._early)
        time.sleep(0.3)  # long past a registration's moment: the id came round again
        pub.send([Outgoing(ANSWER, "a", b"0")], lambda: safe.append(0))
        assert safe == [] and pub.pending() == 1
        pub.on_published(7)  # its own acknowledgement
        assert wait(lambda: safe == [0] and pub.pending() == 0)
    finally:
        pub.stop()


def test_past_the_hold_limit_messages_go_through_the_outbox_in_order(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=1 << 20)
    link = FakeLink()
    link.up = True
    pub = Publisher(box, link.publish, window=10, hold=2)
    pub.start()
    try:
        pub.send(
            [Outgoing(ANSWER, "a", b"0"), Outgoing(ANSWER, "a", b"1"), Outgoing(ANSWER, "a", b"2")]
        )
        pub.send([Outgoing(ANSWER, "a", b"3")])
        assert [r.payload for r in box.after(0, 10)] == [b"2", b"3"]
        assert wait(lambda: [p for _, p in link.sent] == [b"0", b"1", b"2", b"3"])
    finally:
        pub.stop()


def test_qos0_the_client_dropped_in_a_broken_connection_is_sent_again_or_settled(tmp_path):
    """The MQTT client drops QoS 0 messages unsent when the connection breaks and never
    reports them; neither a held one nor an outbox row may then wait forever."""
    box, link, pub = _publisher(tmp_path, spill_after=0.2)
    try:
        pub.send([Outgoing(TELEMETRY, "t", b"held", qos=0)])  # dropped by the client
        assert wait(lambda: [p for _, p in link.sent] == [b"held", b"held"])
        pub.on_published(2)
        assert wait(lambda: len(box) == 0)
        assert pub.pending() == 0
        pub.send([Outgoing(ANSWER, "a", b"next")])
        assert len(box) == 0 and link.sent[-1][1] == b"next"  # from memory again
        pub.on_published(3)

        link.up = False
        box.add(TELEMETRY, "t", b"row", qos=0)
        link.up = True
        pub.poke()
        assert wait(lambda: link.sent[-1][1] == b"row")  # and the client drops it too
        time.sleep(0.3)
        assert len(box) == 1
        pub.on_connection(True)
        assert wait(lambda: len(box) == 0), "a QoS 0 row waited for an acknowledgement forever"
    finally:
        pub.stop()


def test_a_send_the_outbox_cannot_store_never_counts_as_safe(tmp_path, monkeypatch):
    """Disk full: the answer that went out from memory is not enough, its request must
    stay unacknowledged (the broker delivers it again)."""
    box, link, pub = _publisher(tmp_path)
    safe = []
    try:
        monkeypatch.setattr(box, "add_many", _disk_full)
        with pytest.raises(sqlite3.OperationalError):
            pub.send(
                [Outgoing(ANSWER, "a", b"0")] + [Outgoing(ANSWER, "a", b"x")] * 20,
                lambda: safe.append(0),
            )
        assert len(link.sent) == 10  # up to the hold limit; the rest had to be stored
        for mid, _ in list(link.sent):
            pub.on_published(mid)
        assert wait(lambda: pub.pending() == 0)
        assert safe == []
    finally:
        monkeypatch.undo()
        pub.stop()


def _disk_full(messages):
    raise sqlite3.OperationalError("database or disk is full")


def test_a_disk_that_fails_while_spilling_keeps_the_messages_held_until_it_works(
    tmp_path, monkeypatch
):
    box, link, pub = _publisher(tmp_path, spill_after=0.1)
    safe = []
    try:
        real = box.add_many
        monkeypatch.setattr(box, "add_many", _disk_full)
        pub.send([Outgoing(ANSWER, "a", b"0")], lambda: safe.append(0))
        time.sleep(0.5)
        assert safe == [] and pub.pending() == 1  # still held, not lost, not safe
        monkeypatch.setattr(box, "add_many", real)
        assert wait(lambda: len(box) == 1 and safe == [0]), "the publisher gave up"
    finally:
        monkeypatch.undo()
        pub.stop()


def test_a_zero_byte_outbox_is_set_aside_with_an_error_not_taken_as_empty(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"")
    # a write-ahead log beside it may still hold the messages: it is kept too
    path.with_name(path.name + "-wal").write_bytes(b"w" * 100)
    box = Outbox(path, max_bytes=1 << 20)
    assert len(box) == 0
    aside = sorted(p.name for p in tmp_path.iterdir() if ".bad-" in p.name)
    assert len(aside) == 2 and aside[0].startswith("outbox.sqlite3.bad-")
    assert aside[1].endswith("-wal") and (tmp_path / aside[1]).read_bytes() == b"w" * 100
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("0 bytes" in m and "set aside" in m for m in errors), errors
    box.add(ANSWER, "a", b"1")  # and the new outbox works
    box.close()
    assert len(Outbox(path, max_bytes=1 << 20)) == 1


def test_a_corrupt_outbox_is_set_aside_and_the_daemon_keeps_going(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite3"
    junk = b"not a database at all " * 200
    path.write_bytes(junk)
    box = Outbox(path, max_bytes=1 << 20)
    assert len(box) == 0
    aside = [p for p in tmp_path.iterdir() if ".bad-" in p.name]
    assert [p.read_bytes() for p in aside] == [junk]  # kept as it was, for a person
    assert any("set aside" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    box.add(ANSWER, "a", b"1")
    assert len(box) == 1


def test_an_outbox_in_a_folder_that_cannot_be_used_is_a_config_error(tmp_path):
    from edge_runtime.errors import ConfigError

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="check state_dir"):
        Outbox(tmp_path / "file" / "outbox.sqlite3", max_bytes=1 << 20)


def _fill_outbox(box, size=300):
    """Answers into ``box`` until its disk is full; returns their sequence numbers."""
    seqs = []
    with pytest.raises(StorageError, match="full"):
        for i in range(100_000):
            seqs.append(box.add(ANSWER, "edge/d/predictions", b"%06d" % i + bytes(size)))
    return seqs


def test_on_a_full_disk_acknowledged_rows_are_still_deleted_and_storing_resumes(tmp_path):
    with small_disk(tmp_path / "small", 2 << 20) as folder:
        path = folder / "outbox.sqlite3"
        box = Outbox(path, max_bytes=64 << 20)
        seqs = _fill_outbox(box)
        fill(folder / "filler")  # and whatever else there was room for
        # the failed write left the books as they were: no "cannot rollback"
        assert box.disk_full and len(box) == len(seqs) > 100
        assert [e.seq for e in box.after(0, 100_000)] == seqs
        # every acknowledged row can be deleted, 50 at a time as the publisher does
        for i in range(0, len(seqs), 50):
            box.remove_many(seqs[i : i + 50])
        assert len(box) == 0 and box.disk_full
        # the log's space goes back to the folder: the outbox itself filled it here
        assert box.recover() and not box.disk_full
        fill(folder / "filler")  # something else takes the room
        with pytest.raises(StorageError):
            box.add(ANSWER, "a", bytes(10_000))
        assert box.disk_full and not box.recover()
        (folder / "filler").unlink()
        assert box.recover() and not box.disk_full
        assert box.add(ANSWER, "a", b"after") is not None
        box.close()
        again = Outbox(path, max_bytes=64 << 20)
        assert [e.payload for e in again.after(0, 10)] == [b"after"]
        again.close()


def test_on_a_full_disk_answers_go_out_from_memory_and_nothing_twice(tmp_path):
    """Broker away, disk full: what the outbox cannot take waits in memory, goes out
    behind the stored rows once the broker is back, and counts as safe only when the
    broker acknowledged it; when space returns the outbox stores again by itself."""
    with small_disk(tmp_path / "small", 2 << 20) as folder:
        box = Outbox(folder / "o.db", max_bytes=64 << 20)
        link = FakeLink()
        pub = Publisher(box, link.publish, window=10, hold=10, spill_after=0.1)
        pub.start()
        try:
            stored = _fill_outbox(box)
            fill(folder / "filler")
            safe = []
            for i in range(30):
                pub.send([Outgoing(ANSWER, "a", b"mem%d" % i)], lambda i=i: safe.append(i))
            assert pub.in_memory() == 30 and safe == []
            link.up = True
            pub.poke()
            acked = set()

            def ack_all():
                for mid, _ in list(link.sent):
                    if mid not in acked:
                        acked.add(mid)
                        pub.on_published(mid)
                return len(link.sent) == len(stored) + 30 and len(safe) == 30

            assert wait(ack_all, 20), (len(link.sent), len(safe))
            payloads = [p for _, p in link.sent]
            assert len(payloads) == len(set(payloads))  # nothing sent twice
            assert payloads[-30:] == [b"mem%d" % i for i in range(30)]  # in order
            assert wait(lambda: len(box) == 0), "acknowledged rows were not deleted"
            # space returns: the next messages that must wait are stored again
            (folder / "filler").unlink()
            assert wait(lambda: not box.disk_full, 5)
            link.up = False
            pub.send([Outgoing(ANSWER, "a", b"stored")], lambda: safe.append(-1))
            assert len(box) == 1 and safe[-1] == -1
        finally:
            pub.stop()
            box.close()


def test_past_the_memory_bound_a_full_disk_refuses_and_counts(tmp_path, monkeypatch):
    from edge_runtime.daemon import publisher

    monkeypatch.setattr(publisher, "KEEP_IN_MEMORY", 5)
    with small_disk(tmp_path / "small", 1 << 20) as folder:
        box = Outbox(folder / "o.db", max_bytes=64 << 20)
        link = FakeLink()
        pub = Publisher(box, link.publish)
        pub.start()
        try:
            _fill_outbox(box)
            fill(folder / "filler")
            safe = []
            pub.send([Outgoing(ANSWER, "a", b"x")] * 5, lambda: safe.append(1))
            with pytest.raises(StorageError, match="not kept"):
                pub.send([Outgoing(ANSWER, "a", b"y")] * 2, lambda: safe.append(2))
            assert pub.not_kept == 2 and pub.in_memory() == 5 and safe == []
        finally:
            pub.stop()
            box.close()


def test_an_outbox_opens_on_a_full_disk_with_its_reserve_and_starts_full(tmp_path):
    """A restart on a full disk: opening makes the log and its index, which the reserve
    left by the last run pays for; the stored rows are there, nothing new is written
    until there is room, and then storing resumes."""
    with small_disk(tmp_path / "small", 2 << 20) as folder:
        path = folder / "outbox.sqlite3"
        box = Outbox(path, max_bytes=64 << 20)
        seqs = [box.add(ANSWER, "a", b"%d" % i) for i in range(20)]
        box.close()
        fill(folder / "filler")
        again = Outbox(path, max_bytes=64 << 20)
        assert again.disk_full and [e.seq for e in again.after(0, 100)] == seqs
        again.remove_many(seqs[:10])
        (folder / "filler").unlink()
        assert again.recover() and again.add(ANSWER, "a", b"later") is not None
        assert len(again) == 11
        again.close()
