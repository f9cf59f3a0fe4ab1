"""The on-disk outbox: order, acknowledgement, restart, the cap that spares answers."""

from __future__ import annotations

from edge_runtime.daemon.outbox import ANSWER, TELEMETRY, Outbox
from edge_runtime.daemon.publisher import Publisher


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
