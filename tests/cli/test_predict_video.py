"""``edge-runtime predict`` on a video file and a stream URL: one line per processed
frame, ``--frames`` and ``--fps``, and a stream that cannot be opened is one line."""

from __future__ import annotations

import json

import pytest
from support.mosquitto import free_port
from support.video import digit_frames, write_clip

from tests.conftest import MODELS, assert_one_line_error

av = pytest.importorskip("av")

LABELS = [3, 7, 1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "digits.mp4"
    return write_clip(path, [img for img, _ in digit_frames(LABELS)], hold=4, fps=8)


def test_predict_on_a_video_file_prints_one_line_per_frame(edge_runtime_cli, clip):
    model = MODELS / "digits_int8.tflite"
    done = edge_runtime_cli("predict", "--model", model, "--json", clip)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["frame_index"] for d in lines] == list(range(1, 13))
    assert [d["top"][0]["index"] for d in lines] == [d for d in LABELS for _ in range(4)]
    done = edge_runtime_cli("predict", "--model", model, "--frames", 5, clip)
    assert done.returncode == 0, done.stderr
    text = done.stdout.splitlines()
    assert len(text) == 5 and text[4].startswith(f"{clip} frame 5: 7 ")
    # --fps samples the clip as it plays (8 frames a second): fewer frames, in order
    done = edge_runtime_cli("predict", "--model", model, "--json", "--fps", 2, clip)
    assert done.returncode == 0, done.stderr
    taken = [json.loads(line)["frame_index"] for line in done.stdout.splitlines()]
    assert taken[0] == 1 and len(taken) < 12 and taken == sorted(set(taken))


def test_predict_on_a_stream_that_cannot_be_opened_is_one_line(edge_runtime_cli):
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    done = edge_runtime_cli("predict", "--model", MODELS / "digits_int8.tflite", url)
    assert_one_line_error(done, url, "cannot open")
