"""[[sources]]: the config's checks, the change filter, and the frame sources with a
fake device standing in for a camera (picamera2, and any reader behind a source)."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from functools import partial

import numpy as np
import pytest
from PIL import Image

from edge_runtime.daemon.config import SourceConfig, parse_config
from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.requests import Request
from edge_runtime.errors import ConfigError
from edge_runtime.sources.capture import Capture
from edge_runtime.sources.changes import ChangeFilter
from edge_runtime.sources.frames import Captured, Size, SourceError, wanted_size
from edge_runtime.sources.open import open_reader
from edge_runtime.sources.picamera import PicameraReader
from edge_runtime.sources.worker import Emitter, SourceWorker

BASE = {"device_id": "pi", "state_dir": "/tmp/s", "model": {"path": "m.tflite"}}


def parse(*sources: dict[str, object]):
    return parse_config({**BASE, "sources": list(sources)})


def test_sources_parse_with_defaults():
    config = parse(
        {"name": "door", "url": "rtsp://cam.lan/stream1"},
        {
            "name": "clip",
            "url": "file:///clips/a.mp4",
            "loop": True,
            "publish": "changes",
            "fps": 0.0,
            "snapshot": True,
            "min_score": 0.7,
            "heartbeat": 5.0,
        },
    )
    door, clip = config.sources
    assert door == SourceConfig("door", "rtsp://cam.lan/stream1")
    assert (clip.loop, clip.publish, clip.fps, clip.snapshot) == (True, "changes", 0.0, True)
    assert parse_config(BASE).sources == ()


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"name": "Door!", "url": "rtsp://x"}, "sources[0].name"),
        ({"name": "a", "url": "ftp://x"}, "sources[0].url"),
        ({"name": "a", "url": "rtsp://x", "loop": True}, "only a file:// source can loop"),
        ({"name": "a", "url": "rtsp://x", "fps": -1}, "sources[0].fps"),
        ({"name": "a", "url": "rtsp://x", "publish": "some"}, "sources[0].publish"),
        ({"name": "a", "url": "rtsp://x", "colour": 1}, "sources[0].colour: unknown key"),
        ({"url": "rtsp://x"}, "sources[0].name: missing"),
    ],
)
def test_bad_sources_are_refused_by_name(table, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        parse(table)


@pytest.mark.parametrize(
    "url",
    [
        "rtmp://admin:s3cret@10.0.0.5:554/live",  # a scheme the daemon does not read
        "rtsp:/admin:s3cret@10.0.0.5:554/live",  # a slash short
        "RTSP://admin:s3cret@10.0.0.5:554/live",
    ],
)
def test_an_invalid_url_is_refused_without_its_user_and_password(url):
    """The config error ends in the service's log: it says which URL, without the
    ``user:password@``."""
    with pytest.raises(ConfigError, match=r"sources\[0\]\.url") as exc:
        parse({"name": "a", "url": url})
    told = str(exc.value)
    assert "10.0.0.5:554/live" in told
    assert "s3cret" not in told and "admin" not in told


def test_duplicate_source_names_and_too_many_sources_are_refused():
    with pytest.raises(ConfigError, match="'a' is used more than once"):
        parse({"name": "a", "url": "rtsp://x"}, {"name": "a", "url": "rtsp://y"})
    with pytest.raises(ConfigError, match="up to 16"):
        parse(*({"name": f"s{i}", "url": "rtsp://x"} for i in range(17)))


def top(label: str, score: float) -> dict:
    return {"top": [{"index": 0, "label": label, "score": score}]}


def test_changes_mode_publishes_first_changes_and_heartbeats():
    f = ChangeFilter("changes", 0.5, 10.0)
    assert f.decide(top("cat", 0.9), 100.0) == (True, True)
    assert f.decide(top("cat", 0.8), 101.0) == (False, False)
    assert f.decide(top("dog", 0.4), 102.0) == (True, True)  # below min_score: nothing seen
    assert f.decide(top("dog", 0.3), 103.0) == (False, False)
    assert f.decide(top("dog", 0.3), 112.5) == (True, False)  # heartbeat
    dets = ChangeFilter("changes", 0.5, 60.0)
    two = {"detections": [{"label": "a", "score": 0.9}, {"label": "b", "score": 0.6}]}
    swapped = {"detections": [{"label": "b", "score": 0.7}, {"label": "a", "score": 0.8}]}
    assert dets.decide(two, 0.0) == (True, True)
    assert dets.decide(swapped, 1.0) == (False, False)  # the same set
    every = ChangeFilter("every", 0.5, 60.0)
    assert every.decide(top("cat", 0.9), 0.0)[0] and every.decide(top("cat", 0.9), 0.1)[0]


def test_decoding_size_follows_the_model():
    model = Size(224, 224)
    assert wanted_size(1920, 1080, model, False) == model
    assert wanted_size(1920, 1080, model, True) == Size(398, 224)
    assert wanted_size(100, 80, model, True) == Size(100, 80)  # never upscaled
    assert wanted_size(1920, 1080, Size(8, 8), False, 320) == Size(320, 180)


class FakeCamera:
    """Stands in for picamera2's Picamera2: frames of a known colour (BGR in memory).
    ``fail``: the set-up step ("configure", "start") that raises; ``hung``: no frame
    comes, and a capture waits for it as long as its ``wait`` allows (picamera2 then
    raises TimeoutError), forever without one."""

    def __init__(self, fail: str = "", hung: bool = False) -> None:
        self.size = None
        self.closed = False
        self.fail = fail
        self.hung = threading.Event() if hung else None

    def create_video_configuration(self, main):
        return main

    def configure(self, config):
        if self.fail == "configure":
            raise RuntimeError("Failed to configure the camera")
        self.size = config["size"]

    def start(self):
        if self.fail == "start":
            raise RuntimeError("Camera frontend has timed out!")

    def capture_array(self, name, wait=None):
        if self.hung is not None:
            timeout = None if wait in (None, True) else wait
            if not self.hung.wait(timeout):
                raise TimeoutError("timed out")
        w, h = self.size
        pixels = np.zeros((h, w, 3), dtype=np.uint8)
        pixels[:, :, 2] = 200  # red, as libcamera's RGB888 lays it out
        return pixels

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_picamera_reader_with_a_fake_camera_gives_rgb_frames_of_the_asked_size():
    cam = FakeCamera()
    reader = PicameraReader("picamera2:0", Size(32, 24), gray=False, camera=cam)
    frames = reader.frames()
    img = next(frames).decoded().image
    assert img.size == (32, 24) and img.getpixel((0, 0)) == (200, 0, 0)
    reader.close()
    assert list(frames) == [] and cam.closed


def test_a_hung_camera_gives_up_its_capture_and_is_closed(monkeypatch):
    """A camera that stops delivering frames: the capture gives up (picamera2's
    ``wait``) and the camera is closed, so the next attempt can open it; without a
    bound the capture thread held the device for good and every reconnect found it busy."""
    from edge_runtime.sources import picamera

    monkeypatch.setattr(picamera, "CAPTURE_WAIT", 0.05)
    cam = FakeCamera(hung=True)
    reader = PicameraReader("picamera2:0", Size(32, 24), gray=False, camera=cam)
    ended: list[BaseException] = []

    def read() -> None:
        try:
            next(reader.frames())
        except BaseException as exc:  # noqa: BLE001 - what ended the capture is the result
            ended.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(10)
    try:
        assert ended and isinstance(ended[0], SourceError), ended
        assert "no frame" in ended[0].detail and cam.closed
    finally:
        cam.hung.set()  # the old code's capture: let its thread end
        thread.join(10)


@pytest.mark.parametrize("step", ["configure", "start"])
def test_a_camera_whose_set_up_fails_is_closed(step):
    cam = FakeCamera(fail=step)
    with pytest.raises(SourceError, match="cannot open camera 0"):
        PicameraReader("picamera2:0", Size(32, 24), gray=False, camera=cam)
    assert cam.closed


def test_missing_libraries_are_one_clear_line():
    sizing = lambda w, h: Size(8, 8)  # noqa: E731
    with pytest.raises(SourceError, match="picamera2 is not installed") as exc:
        open_reader("picamera2:0", sizing, gray=True)
    assert "\n" not in exc.value.detail
    pytest.importorskip("av")
    with pytest.raises(SourceError, match="video4linux2"):
        open_reader("v4l2:///dev/video0", sizing, gray=True)


class FakeDevice:
    """A frame source standing in for a camera: one frame, the next ``n - 1`` at once
    when ``taken`` is set, then nothing until ``unplug`` is set, then the stream ends."""

    detail = "fake"

    def __init__(self, n: int, taken: threading.Event, unplug: threading.Event) -> None:
        self.n = n
        self.taken = taken
        self.unplug = unplug

    def frames(self) -> Iterator[Captured]:
        for i in range(self.n):
            if i == 1:
                self.taken.wait(10)
            yield Captured(partial(Image.new, "L", (8, 8), i))
        self.unplug.wait(10)

    def close(self) -> None:
        self.unplug.set()


class Record(Emitter):
    def __init__(self) -> None:
        self.docs: list[dict] = []
        self.states: list[tuple[str, str]] = []
        self.changed = threading.Event()

    def prediction(self, name, doc):
        self.docs.append(doc)

    def state(self, name, state, detail):
        self.states.append((state, detail))
        self.changed.set()

    def snapshot(self, name, jpeg):
        pass


def test_a_worker_with_a_fake_device_keeps_only_the_newest_frame_and_reconnects():
    """A device that gives 50 frames at once while the model is busy with the first:
    the others but the newest are dropped; unplugged, the source goes lost, reconnects,
    and counts it."""
    record = Record()
    held: list[Job] = []
    gate = threading.Event()
    unplug = threading.Event()
    taken = threading.Event()
    opened = []

    def opener():
        opened.append(1)
        return FakeDevice(50, taken, unplug)

    def submit(job: Job) -> bool:
        held.append(job)
        taken.set()
        return True

    worker = SourceWorker(
        SourceConfig("cam", "v4l2:///dev/video0", fps=0.0),
        opener=opener,
        to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
        submit=submit,
        emit=record,
    )
    worker.start()
    try:
        for _ in range(100):
            if worker.frames_in == 50:
                break
            gate.wait(0.05)
        gate.wait(0.2)
        assert len(held) == 1 and worker.frames_in == 50
        assert worker.dropped == 48  # frames 2..49 replaced by a newer one; 50 waits
        held[0].done.deliver({"top": [{"index": 1, "label": "1", "score": 1.0}]}, None)
        for _ in range(100):
            if len(held) == 2:
                break
            gate.wait(0.05)
        assert held[1].request.id == "cam:50"  # the newest frame was next
        assert record.docs[0]["frame_index"] == 1 and record.docs[0]["source"] == "cam"
        unplug.set()
        for _ in range(100):  # backoff of at most a second, then a new attempt
            if len(opened) >= 2 and worker.reconnects >= 1:
                break
            gate.wait(0.05)
        assert worker.reconnects >= 1 and worker.errors >= 1
    finally:
        worker.stop(5)
    assert record.states[-1] == ("stopped", "")


class HungDevice:
    """A decoder that gives ``n`` frames and then hangs for good, deaf to ``close``."""

    detail = "hung"

    def __init__(self, n: int, forever: threading.Event) -> None:
        self.n = n
        self.forever = forever

    def frames(self) -> Iterator[Captured]:
        for i in range(self.n):
            yield Captured(partial(Image.new, "L", (8, 8), i))
        self.forever.wait()

    def close(self) -> None:
        pass


def answered_at_once(record: Record):
    """A submit whose job is answered on the spot (a model that takes no time)."""

    def submit(job: Job) -> bool:
        job.done.deliver({"top": [{"index": 0, "label": "0", "score": 1.0}]}, None)
        return True

    return submit


def wait_until(check, seconds: float = 10.0) -> bool:
    deadline = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        deadline.wait(0.05)
    return check()


def test_an_unexpected_capture_failure_is_logged_with_the_source_name(caplog):
    """A reader failing with something else than a SourceError (a library's bug): the
    log's traceback says which source it was, and the attempt ends with its detail."""

    def opener():
        raise RuntimeError("the library broke")

    ended: list[str] = []
    capture = Capture("door", opener, lambda frame: None, ended.append)
    capture.start()
    assert wait_until(lambda: bool(ended))
    assert ended == ["RuntimeError: the library broke"]
    failed = [r for r in caplog.records if r.exc_info]
    assert len(failed) == 1 and "door" in failed[0].getMessage()


def test_a_hung_decoder_is_abandoned_and_replaced_and_the_source_streams_again():
    record = Record()
    forever = threading.Event()
    opened = []

    def opener():
        opened.append(1)
        return HungDevice(3, forever)

    worker = SourceWorker(
        SourceConfig("cam", "rtsp://cam.lan/x", fps=0.0),
        opener=opener,
        to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
        submit=answered_at_once(record),
        emit=record,
        stall_after=0.5,
    )
    worker.start()
    try:
        assert wait_until(lambda: worker.reconnects >= 1)
        assert ("lost", "no frame for 0.5 s") in record.states
        assert len(opened) >= 2 and worker.state in ("streaming", "lost", "connecting")
        assert wait_until(lambda: len(record.docs) >= 2 and record.docs[-1]["frame_index"] > 3)
        indexes = [d["frame_index"] for d in record.docs]
        assert indexes == sorted(set(indexes))  # counted on since the source started
    finally:
        worker.stop(5)
        forever.set()
    assert record.states[-1] == ("stopped", "")


@pytest.mark.parametrize("loop", [True, False])
def test_a_looping_clip_starts_again_and_one_without_loop_ends_for_good(loop):
    record = Record()
    opened = []
    done = threading.Event()
    done.set()

    def opener():
        opened.append(1)
        return FakeDevice(2, done, done)

    worker = SourceWorker(
        SourceConfig("clip", "file:///clips/a.mp4", fps=0.0, loop=loop),
        opener=opener,
        to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
        submit=answered_at_once(record),
        emit=record,
    )
    worker.start()
    try:
        if loop:
            assert wait_until(lambda: len(opened) >= 3)
            assert not any(s in ("ended", "lost") for s, _ in record.states)
        else:
            assert wait_until(lambda: worker.state == "ended")
            assert len(opened) == 1 and ("ended", "the clip ended") in record.states
    finally:
        worker.stop(5)


def test_without_pyav_an_ffmpeg_source_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    monkeypatch.delitem(sys.modules, "edge_runtime.sources.ffmpeg", raising=False)
    with pytest.raises(SourceError, match=re.escape("pip install 'edge-runtime[video]'")) as exc:
        open_reader("rtsp://cam.lan/stream1", lambda w, h: Size(8, 8), gray=True)
    assert "\n" not in exc.value.detail
