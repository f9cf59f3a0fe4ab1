"""How a source takes the unlucky events of real streams, read by the real reader
(FFmpeg through PyAV) from servers on 127.0.0.1: a camera that refuses the connection
(its password stays out of the state and the log)."""

from __future__ import annotations

import logging
import socket

import pytest

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.requests import Request
from edge_runtime.sources.frames import Size
from edge_runtime.sources.open import open_reader
from edge_runtime.sources.worker import SourceWorker
from tests.unit.test_sources import Record, answered_at_once, wait_until

pytest.importorskip("av")


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


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_camera_password_stays_out_of_the_state_and_the_log(scheme, caplog):
    """FFmpeg's error names the URL it was given, user:password@ included; the retained
    state (MQTT) and the log line say where the camera is without them."""
    caplog.set_level(logging.DEBUG)
    port = closed_port()
    record = Record()
    worker = worker_for(f"{scheme}://admin:s3cret@127.0.0.1:{port}/stream1", record)
    worker.start()
    try:
        assert wait_until(lambda: any(state == "lost" for state, _ in record.states))
    finally:
        worker.stop(5)
    lost = next(detail for state, detail in record.states if state == "lost")
    assert f"127.0.0.1:{port}/stream1" in lost  # still says which camera
    told = " ".join(detail for _, detail in record.states) + caplog.text
    assert "s3cret" not in told and "admin" not in told
