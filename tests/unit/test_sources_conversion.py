"""Only the frames a source takes for the model are scaled and converted: every frame of
an H.264 stream is decoded, but the frames ``fps`` samples out, and those a newer frame
replaces before the model is ready, never reach swscale. The real reader on a real
clip, paced at its 30 fps; the conversions are counted where the reader makes them."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from PIL import Image
from support.video import digit_frames, write_clip

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.requests import Request
from edge_runtime.sources.frames import Size

pytest.importorskip("av")

from edge_runtime.sources.ffmpeg import FfmpegReader, scaled  # noqa: E402 - needs PyAV
from edge_runtime.sources.worker import SourceWorker  # noqa: E402

RATE = 30
FRAMES = 60  # 2 s at 30 fps


class Quiet:
    def prediction(self, name: str, doc: dict[str, Any]) -> None:
        pass

    def state(self, name: str, state: str, detail: str) -> None:
        pass

    def snapshot(self, name: str, jpeg: bytes) -> None:
        pass


class Counted:
    """``scaled``, counting its calls (any thread)."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, frame: Any, size: Size, fmt: str) -> Image.Image:
        with self._lock:
            self.calls += 1
        return scaled(frame, size, fmt)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    images = [img for img, _ in digit_frames([1, 2, 3, 4])]
    path = write_clip(tmp_path_factory.mktemp("clip") / "c.mp4", images, hold=15, fps=RATE)
    return f"file://{path}"


def run_clip(clip: str, fps: float, answer_after: float) -> tuple[SourceWorker, int, int]:
    """Play ``clip`` once through a source whose model answers ``answer_after`` seconds
    after a frame is submitted: the worker, the conversions, the frames submitted."""
    counted = Counted()
    submitted: list[Job] = []
    timers: list[threading.Timer] = []
    answer = {"top": [{"index": 0, "label": "0", "score": 1.0}]}

    def submit(job: Job) -> bool:
        submitted.append(job)
        timer = threading.Timer(answer_after, job.done.deliver, (answer, None))
        timers.append(timer)
        timer.start()
        return True

    worker = SourceWorker(
        SourceConfig("cam", clip, fps=fps),
        opener=lambda: FfmpegReader(clip, lambda w, h: Size(16, 16), gray=True, scale=counted),
        to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
        submit=submit,
        emit=Quiet(),
    )
    worker.start()
    try:
        done = threading.Event()
        for _ in range(200):  # the clip plays for 2 s
            if worker.state == "ended":
                break
            done.wait(0.05)
    finally:
        worker.stop(5)
        for timer in timers:
            timer.cancel()
            timer.join(5)
    assert worker.state == "stopped" and worker.frames_in == FRAMES
    return worker, counted.calls, len(submitted)


def test_at_fps_sampling_only_the_frames_taken_are_converted(clip):
    worker, conversions, submitted = run_clip(clip, fps=5.0, answer_after=0.0)
    # 5 of 30 a second are taken: about 10 of the 60 frames, each converted once
    assert submitted >= 5
    assert conversions == submitted
    assert conversions <= FRAMES // 3


def test_frames_replaced_before_the_model_is_ready_are_never_converted(clip):
    worker, conversions, submitted = run_clip(clip, fps=0.0, answer_after=0.2)
    # a model taking 0.2 s a frame takes about 10 of the 60; the rest are replaced
    assert worker.dropped >= FRAMES // 2
    assert conversions == submitted
    assert conversions <= FRAMES // 3
