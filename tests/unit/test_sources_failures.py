"""How a source takes the unlucky events of real streams, read by the real reader
(FFmpeg through PyAV) from servers on 127.0.0.1: a camera that refuses the connection
(its password stays out of the state and the log), a corrupt frame in a live stream, a
camera whose video freezes while its audio goes on, one whose resolution changes."""

from __future__ import annotations

import logging
import socket

import pytest
from support.streams import FrozenVideoServer, MjpegServer
from support.video import digit_frames

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.requests import Request
from edge_runtime.sources.frames import Size, wanted_size
from edge_runtime.sources.open import open_reader
from edge_runtime.sources.worker import SourceWorker
from tests.unit.test_sources import Record, answered_at_once, wait_until

pytest.importorskip("av")

from edge_runtime.sources.ffmpeg import FfmpegReader  # noqa: E402 - needs PyAV

#: A JPEG's start, then noise: a part no decoder can read.
CORRUPT = b"\xff\xd8\xff\xdb" + bytes(range(256)) * 4


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_for(url: str, record: Record, **kwargs: float) -> SourceWorker:
    """A source reading ``url`` with the real reader, each frame answered at once."""
    return SourceWorker(
        SourceConfig("cam", url, fps=0.0),
        opener=lambda: open_reader(url, lambda w, h: Size(16, 16), gray=True),
        to_request=lambda frame, rid: Request(rid, frame.image.tobytes(), tensor=True),
        submit=answered_at_once(record),
        emit=record,
        **kwargs,
    )


def first_loss(url: str, record: Record) -> SourceWorker:
    """Read ``url`` until the source is first ``lost``; the stopped worker."""
    worker = worker_for(url, record)
    worker.start()
    try:
        assert wait_until(lambda: any(state == "lost" for state, _ in record.states))
    finally:
        worker.stop(5)
    return worker


def lost_detail(record: Record) -> str:
    return next(detail for state, detail in record.states if state == "lost")


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_camera_password_stays_out_of_the_state_and_the_log(scheme, caplog):
    """FFmpeg's error names the URL it was given, user:password@ included; the retained
    state (MQTT) and the log line say where the camera is without them."""
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    record = Record()
    first_loss(f"{scheme}://admin:s3cret@127.0.0.1:{port}/stream1", record)
    assert f"127.0.0.1:{port}/stream1" in lost_detail(record)  # still says which camera
    told = " ".join(detail for _, detail in record.states) + caplog.text
    assert "s3cret" not in told and "admin" not in told


def test_a_corrupt_frame_of_a_live_stream_is_skipped_not_a_reconnection():
    """An MJPEG camera that sends a part no decoder can read now and then (a USB or
    Wi-Fi glitch): the frame is skipped and the stream goes on, on the same connection,
    where it used to end (``lost``, a new connection a second later, every time)."""
    frames = [img for img, _ in digit_frames([1, 2, 3, 4])]
    record = Record()
    with MjpegServer([*frames[:2], CORRUPT, *frames[2:], b"not a JPEG"], fps=40) as stream:
        worker = worker_for(stream.url, record)
        worker.start()
        try:
            assert wait_until(lambda: worker.processed >= 15)
        finally:
            worker.stop(5)
        assert stream.sent >= 18 and stream.clients == 1
    assert [state for state, _ in record.states] == ["connecting", "streaming", "stopped"]
    assert worker.errors == 0 and worker.reconnects == 0


def test_a_stream_of_nothing_but_corrupt_frames_is_lost_with_the_decoders_error():
    record = Record()
    with MjpegServer([CORRUPT], fps=80) as stream:
        worker = first_loss(stream.url, record)
    assert "Invalid data" in lost_detail(record) and worker.processed == 0


def test_an_abandoned_attempt_closes_its_connection_while_other_packets_flow():
    """Video frozen, audio going on: after ``stall_after`` without a frame the source
    abandons the attempt and starts another; the abandoned one closes its connection at
    the next packet, where it read the audio on for as long as the camera sent it (a
    thread and a connection more at each stall)."""
    record = Record()
    with FrozenVideoServer(video_seconds=2.0) as stream:
        worker = worker_for(stream.url, record, stall_after=1.0)
        worker.start()
        try:
            assert wait_until(lambda: ("lost", "no frame for 1 s") in record.states)
            assert wait_until(lambda: stream.gone >= 1, 5.0)
        finally:
            worker.stop(5)
    assert worker.processed >= 1 and record.states[1][0] == "streaming"


def test_a_stream_that_changes_resolution_is_scaled_for_its_new_shape():
    """A camera switched from a 1:1 to a 2:1 stream mid-way (its settings changed, a
    day/night profile): frames of the new shape are decoded at the size that keeps their
    aspect, where they were squeezed into the first frame's for as long as the
    connection lasted."""
    square = digit_frames([5])[0][0]
    wide = square.resize((128, 64))
    with MjpegServer([square] * 4 + [wide] * 4, fps=40) as stream:
        reader = FfmpegReader(
            stream.url, lambda w, h: wanted_size(w, h, Size(32, 32), True), gray=False
        )
        sizes = []
        for captured in reader.frames():
            sizes.append(captured.decoded().image.size)
            if len(sizes) == 12:
                reader.close()
    assert {(32, 32), (64, 32)} == set(sizes)
    assert sizes[:4] == [(32, 32)] * 4 and sizes[4:8] == [(64, 32)] * 4


@pytest.mark.parametrize("password", ["pa#ss", "pa?ss", "pa/ss", "Pa#1?x/y@z"])
def test_a_password_with_an_unencoded_delimiter_stays_out_of_the_state(password, caplog):
    """A password written with /, ? or # as they are (not %-encoded) ends the URL's
    authority early for a parser, and FFmpeg refuses the URL naming it whole: the state
    and the log still leave the user and password out."""
    caplog.set_level(logging.DEBUG)
    record = Record()
    first_loss(f"rtsp://admin:{password}@127.0.0.1:{closed_port()}/stream1", record)
    assert "127.0.0.1:" in lost_detail(record)  # still says which camera
    told = " ".join(detail for _, detail in record.states) + caplog.text
    assert password not in told and "admin" not in told
