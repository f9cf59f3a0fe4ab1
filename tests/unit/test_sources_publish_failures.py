"""A source whose messages cannot be published keeps running: its predictions go
through the daemon's real publisher into a real outbox on a full disk (a tmpfs), and its
snapshots and states meet a broker that refuses them for good (``TransportError``). The
source's control thread stays alive, every frame is still answered, each failure is
counted in the source's ``errors`` and logged once per kind of message."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import partial

import pytest
from PIL import Image
from support.smalldisk import fill, small_disk

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.outbox import Outbox
from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.publisher import Publisher
from edge_runtime.daemon.requests import Request
from edge_runtime.daemon.supervisor import Heartbeat
from edge_runtime.errors import TransportError
from edge_runtime.sources.frames import Captured
from edge_runtime.sources.manager import DaemonEmitter
from edge_runtime.sources.worker import SourceWorker
from tests.unit.test_daemon_outbox import _fill_outbox
from tests.unit.test_sources import wait_until

FRAMES = 6


class Device:
    """``FRAMES`` frames, each once the model took the last (``taken``: none is
    dropped), then nothing until closed."""

    detail = "fake"

    def __init__(self, taken: threading.Semaphore) -> None:
        self.taken = taken
        self.closed = threading.Event()

    def frames(self) -> Iterator[Captured]:
        for i in range(FRAMES):
            if i:
                self.taken.acquire(timeout=10)
            yield Captured(partial(Image.new, "RGB", (8, 8), (i * 40, 0, 0)))
        self.closed.wait(30)

    def close(self) -> None:
        self.closed.set()


def offline(topic, payload, qos, correlation):
    return None  # the broker is away: everything goes to the outbox


def refusing(leaves: tuple[str, ...], published: list[str]):
    """A broker that can never take messages to these leaves (too large, invalid)."""

    def publish(topic, payload, qos, retain):
        if topic.rsplit("/", 1)[1] in leaves:
            raise TransportError(f"publish to {topic!r} failed: the payload is too large")
        published.append(topic)

    return publish


def each_frame_a_new_label(taken: threading.Semaphore):
    """Answered at once, each frame seeing another label (a change: a snapshot)."""

    def submit(job: Job) -> bool:
        index = job.request.id.rsplit(":", 1)[1]
        job.done.deliver({"top": [{"index": int(index), "label": index, "score": 1.0}]}, None)
        taken.release()
        return True

    return submit


@pytest.mark.parametrize("refused", [("snapshot",), ("snapshot", "state")])
def test_a_full_outbox_and_refused_messages_neither_stop_nor_silence_the_source(
    refused, tmp_path, monkeypatch, caplog
):
    from edge_runtime.daemon import publisher

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(publisher, "KEEP_IN_MEMORY", 0)  # nothing waits in memory either
    beats: list[Heartbeat] = []
    taken = threading.Semaphore(0)

    def heartbeats(name: str, bound: float) -> Heartbeat:
        beats.append(Heartbeat(name, bound))
        return beats[-1]

    with small_disk(tmp_path / "small", 1 << 20) as folder:
        box = Outbox(folder / "outbox.sqlite3", max_bytes=64 << 20)
        pub = Publisher(box, offline)
        pub.start()
        try:
            _fill_outbox(box)
            fill(folder / "filler")
            published: list[str] = []
            emitter = DaemonEmitter(
                lambda name, leaf: f"edge/d/{name}/{leaf}",
                "d",
                pub.send,
                refusing(refused, published),
            )
            worker = SourceWorker(
                SourceConfig("cam", "v4l2:///dev/video0", fps=0.0, snapshot=True),
                opener=partial(Device, taken),
                to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
                submit=each_frame_a_new_label(taken),
                emit=emitter,
                heartbeats=heartbeats,
            )
            worker.start()
            try:
                beat = beats[0]
                assert wait_until(lambda: worker.processed == FRAMES or beat.ended), beat.ended
                assert beat.ended is None  # the control thread is alive
                assert worker.state == "streaming"
            finally:
                worker.stop(5)
            assert beat.ended == "returned"
        finally:
            pub.stop()
            box.close()
    assert worker.processed == FRAMES
    # every prediction (not kept) and every refused snapshot and state is counted
    assert pub.not_kept == FRAMES
    states = 3  # connecting, streaming, stopped
    if "state" in refused:
        assert worker.errors == 2 * FRAMES + states and not published
    else:
        assert worker.errors == 2 * FRAMES and len(published) == states
    logged = [r.getMessage() for r in caplog.records if "not published" in r.getMessage()]
    assert len(logged) == 1 + len(refused), logged  # once per kind of message
    assert all(line.startswith("source cam: ") for line in logged)


def test_a_state_the_broker_refuses_is_not_raised_on_the_mqtt_thread_at_reconnect(caplog):
    """``republish`` runs in the MQTT client's connect callback: a state the broker
    refuses is logged there, and the other sources' states still go out."""
    published: list[str] = []

    def publish(topic, payload, qos, retain):
        if "/bad/" in topic:
            raise TransportError(f"publish to {topic!r} failed: invalid")
        published.append(topic)

    emitter = DaemonEmitter(lambda name, leaf: f"edge/d/{name}/{leaf}", "d", print, publish)
    with pytest.raises(TransportError):  # the source's worker counts and logs this one
        emitter.state("bad", "streaming", "")
    emitter.state("good", "streaming", "")
    published.clear()
    emitter.republish()
    assert published == ["edge/d/good/state"]
    assert "source bad: state not published again" in caplog.text
