"""A source's frames through the daemon's own path (the sources manager, the request
pipeline, the engine) answer as the same image sent as a request does: detection boxes
are fractions of the frame whatever the resize mode, and the frame's preprocessing is
timed."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image
from support.video import png, write_clip

from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.outbox import Outgoing
from edge_runtime.daemon.pipeline import Pipeline
from edge_runtime.inference.engine import Engine, InputOverrides
from edge_runtime.sources.manager import DaemonEmitter, Sources, route_frames
from edge_runtime.telemetry.stats import Tally
from tests.conftest import MODELS

pytest.importorskip("av")

#: 128x64 frames (2:1), so crop and letterbox both differ from the whole frame; one
#: bright square each, where the 32x32 detector sees it near one of its anchors at a
#: size it was trained on (5 to 9 of its pixels): (left, top, right, bottom) in pixels.
SQUARES = {"letterbox": (34, 2, 62, 30), "crop": (65, 17, 79, 31)}


def scene(square: tuple[int, int, int, int]) -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = np.repeat(rng.integers(0, 50, (64, 128, 1), dtype=np.uint8), 3, axis=2)
    left, top, right, bottom = square
    pixels[top:bottom, left:right] = 230
    return Image.fromarray(pixels, "RGB")


def frame_predictions(engine: Engine, url: str, count: int) -> list[dict]:
    """The first ``count`` predictions a source on ``url`` publishes."""
    docs: list[dict] = []
    got = threading.Condition()

    def send(messages: list[Outgoing]) -> None:
        with got:
            docs.extend(json.loads(m.payload) for m in messages)
            got.notify_all()

    pipeline = Pipeline(
        engine,
        queue_size=4,
        max_pixels=40_000_000,
        top_k=5,
        answer=route_frames(lambda batch: None),
        tally=Tally(100),
    )
    emitter = DaemonEmitter(lambda name, leaf: f"s/{name}/{leaf}", "pi", send, lambda *a: None)
    sources = Sources(
        (SourceConfig("cam", url, fps=0.0),),
        engine=lambda: engine,
        submit=pipeline.submit,
        emitter=emitter,
    )
    pipeline.start()
    sources.start()
    try:
        with got:
            got.wait_for(lambda: len(docs) >= count, timeout=20)
    finally:
        sources.stop(5)
        pipeline.stop(5)
    assert len(docs) >= count
    return docs[:count]


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
def test_frame_boxes_are_fractions_of_the_frame_as_for_requests(tmp_path, mode):
    engine = Engine.load(
        MODELS / "detect_int8.tflite", threads=1, overrides=InputOverrides(resize=mode)
    )
    left, top, right, bottom = SQUARES[mode]
    image = scene(SQUARES[mode])
    try:
        asked = engine.predict(png(image)).detections
        assert len(asked) == 1  # the request path finds the square where it is
        truth = (top / 64, left / 128, bottom / 64, right / 128)
        assert asked[0].box == pytest.approx(truth, abs=0.05)
        clip = write_clip(tmp_path / "clip.mp4", [image], hold=4, fps=20)
        docs = frame_predictions(engine, f"file://{clip}", 2)
    finally:
        engine.close()
    for doc in docs:
        assert len(doc["detections"]) == 1
        assert doc["detections"][0]["box"] == pytest.approx(asked[0].box, abs=0.02)


def test_frame_latency_counts_its_preprocessing(tmp_path):
    engine = Engine.load(MODELS / "detect_int8.tflite", threads=1)
    clip = write_clip(tmp_path / "clip.mp4", [scene(SQUARES["crop"])], hold=4, fps=20)
    try:
        docs = frame_predictions(engine, f"file://{clip}", 2)
    finally:
        engine.close()
    for doc in docs:
        spent = doc["latency_ms"]
        assert spent["preprocess"] > 0 and spent["invoke"] > 0
        steps = spent["preprocess"] + spent["invoke"] + spent["postprocess"]
        assert steps <= spent["capture_to_publish"]
