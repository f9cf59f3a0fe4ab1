"""The decoder a stream gets: the hardware one where it opens and decodes, else threaded
software after one log line, whichever way the hardware one fails; the source's state
and telemetry say which. Real FFmpeg decoders throughout: this machine's FFmpeg has
``h264_v4l2m2m`` but no V4L2 device, so it fails to open for real."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from support.video import digit_frames, write_clip

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.requests import Request
from edge_runtime.sources.frames import Size

av: Any = pytest.importorskip("av")

from edge_runtime.sources import decoder as decoder_module  # noqa: E402 - needs PyAV
from edge_runtime.sources.decoder import Decoder  # noqa: E402
from edge_runtime.sources.ffmpeg import FfmpegReader  # noqa: E402
from edge_runtime.sources.frames import SourceError  # noqa: E402
from edge_runtime.sources.worker import SourceWorker  # noqa: E402

FRAMES = 6
NO_V4L2_DEVICE = not any(Path("/dev").glob("video*"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    images = [img for img, _ in digit_frames([3, 7])]
    path = write_clip(tmp_path_factory.mktemp("clip") / "c.mp4", images, hold=3, fps=20)
    return f"file://{path}"


def read_all(url: str, decoder) -> tuple[list, str]:
    """The frames of ``url`` and, once read, which decoder read them."""
    reader = FfmpegReader(url, lambda w, h: Size(16, 16), gray=True, paced=False, decoder=decoder)
    frames = list(reader.frames())
    return frames, reader.detail


def fallbacks(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge_runtime.sources.decoder"]


def absent(url, stream):
    """A hardware decoder this FFmpeg does not have."""
    return Decoder(url, stream, hardware={"h264": "h264_nosuch"})


def refusing(url, stream):
    """MPEG-4 Part 2's decoder opens, then refuses the H.264 packets: the stand-in for a
    device that opens but cannot decode."""
    return Decoder(url, stream, create=lambda name: av.CodecContext.create("mpeg4", "r"))


@pytest.mark.parametrize(
    ("decoder", "missing", "words"),
    [
        pytest.param(absent, "h264_nosuch", "h264_nosuch", id="absent"),
        pytest.param(
            Decoder,
            "h264_v4l2m2m",
            "avcodec_open2",
            id="no-device-node",
            marks=pytest.mark.skipif(not NO_V4L2_DEVICE, reason="a V4L2 device is here"),
        ),
        pytest.param(refusing, "h264_v4l2m2m", "failed on the first packet", id="refuses"),
    ],
)
def test_a_hardware_decoder_that_fails_falls_back_to_software(
    clip, caplog, decoder, missing, words
):
    """Every frame is decoded, the one the hardware decoder refused included, after one
    log line naming the decoder and why."""
    caplog.set_level(logging.DEBUG, "edge_runtime.sources.decoder")
    assert "h264_v4l2m2m" in av.codecs_available  # FFmpeg has it: it fails for real here
    frames, detail = read_all(clip, decoder)
    assert len(frames) == FRAMES and frames[0].decoded().image.size == (16, 16)
    assert detail == f"h264 (software, threaded); {missing} not usable"
    (line,) = fallbacks(caplog)
    assert missing in line and words in line and "decoding in software" in line


def test_the_fallback_line_leaves_out_a_camera_password(clip, caplog):
    caplog.set_level(logging.DEBUG, "edge_runtime.sources.decoder")
    with av.open(clip[len("file://") :]) as container:
        stream = container.streams.video[0]
        Decoder("rtsp://admin:s3cret@cam.lan/stream1", stream, hardware={"h264": "h264_none"})
    (line,) = fallbacks(caplog)
    assert "rtsp://cam.lan/stream1" in line and "s3cret" not in line and "admin" not in line


def test_a_hardware_decoder_that_works_decodes_the_stream(clip, caplog):
    """FFmpeg's own H.264 decoder, opened as the hardware one would be, stands in for
    a working device: every frame comes through it, nothing is logged."""
    caplog.set_level(logging.DEBUG, "edge_runtime.sources.decoder")

    def decoder(url, stream):
        return Decoder(url, stream, create=lambda name: av.CodecContext.create("h264", "r"))

    frames, detail = read_all(clip, decoder)
    software, _ = read_all(clip, lambda u, s: Decoder(u, s, hardware={}))
    assert detail == "h264 (hardware)" and fallbacks(caplog) == []
    pixels = [f.decoded().image.tobytes() for f in frames]
    assert pixels == [f.decoded().image.tobytes() for f in software]


def test_the_source_state_and_telemetry_name_the_decoder(clip):
    states: list[tuple[str, str]] = []
    streaming = threading.Event()

    class Emit:
        def prediction(self, name, doc):
            pass

        def state(self, name, state, detail):
            states.append((state, detail))
            if state == "streaming":
                streaming.set()

        def snapshot(self, name, jpeg):
            pass

    def submit(job: Job) -> bool:
        job.done.deliver({"top": []}, None)
        return True

    def opener():
        return FfmpegReader(
            clip,
            lambda w, h: Size(16, 16),
            gray=True,
            decoder=absent,
        )

    worker = SourceWorker(
        SourceConfig("cam", clip, fps=0.0, loop=True),
        opener=opener,
        to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
        submit=submit,
        emit=Emit(),
    )
    worker.start()
    try:
        assert streaming.wait(10)
    finally:
        worker.stop(5)
    detail = "h264 (software, threaded); h264_nosuch not usable"
    assert ("streaming", detail) in states
    assert worker.stats()["decoder"] == detail


@pytest.mark.parametrize(("devices", "level"), [(True, logging.WARNING), (False, logging.INFO)])
def test_the_fallback_warns_only_where_the_machine_has_video_devices(
    clip, caplog, monkeypatch, devices, level
):
    """A Pi whose decoder node fails deserves a warning; a PC or a container without any
    V4L2 device decodes in software as expected, said once at INFO."""
    monkeypatch.setattr(decoder_module, "has_video_devices", lambda: devices)
    caplog.set_level(logging.DEBUG, "edge_runtime.sources.decoder")
    with av.open(clip[len("file://") :]) as container:
        stream = container.streams.video[0]
        name = f"h264_absent_{devices}"  # a (decoder, reason) pair not logged before
        Decoder(clip, stream, hardware={"h264": name})
        Decoder(clip, stream, hardware={"h264": name})  # the same again: DEBUG
    levels = [r.levelno for r in caplog.records if r.name == "edge_runtime.sources.decoder"]
    assert levels == [level, logging.DEBUG]


class FailsLater:
    """FFmpeg's H.264 decoder standing in for a hardware one that decodes the first
    packets, then fails (a V4L2 decoder out of buffers): every attribute is the real
    decoder's, ``decode`` fails from the third packet on."""

    def __init__(self) -> None:
        object.__setattr__(self, "inner", av.CodecContext.create("h264", "r"))
        object.__setattr__(self, "packets", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)

    def decode(self, packet: Any) -> Any:
        object.__setattr__(self, "packets", self.packets + 1)
        if self.packets > 2:
            raise av.InvalidDataError(1094995529, "Invalid data found when processing input")
        return self.inner.decode(packet)


def test_a_hardware_decoder_that_fails_later_is_not_tried_again_on_that_stream(clip, caplog):
    """The stream fails once (the source reconnects); its next connection decodes in
    software from the start instead of failing the same way for good."""
    caplog.set_level(logging.DEBUG, "edge_runtime.sources.decoder")

    def decoder(url, stream):
        return Decoder(url, stream, hardware={"h264": "h264_flaky"}, create=lambda n: FailsLater())

    with pytest.raises(SourceError, match="stream failed"):
        read_all(clip, decoder)
    frames, detail = read_all(clip, decoder)
    assert len(frames) == FRAMES
    assert detail == "h264 (software, threaded); h264_flaky failed on this stream before"
    (line,) = fallbacks(caplog)
    assert "h264_flaky failed" in line and "next connection" in line
