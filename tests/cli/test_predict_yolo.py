"""A YOLO-layout int8 model (tests/fixtures/models/yolov8_int8.tflite, made by
tools/make_yolo_model.py) through the engine and ``edge-runtime predict``: recognised,
decoded like the reference decoder, answered as ``detections`` like an SSD model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.inference.engine import Engine, InputOverrides
from edge_runtime.inference.postprocess import place_boxes
from edge_runtime.inference.types import DetectionSettings
from tests.conftest import IMAGES, MODELS
from tests.support.yolo_reference import reference_decode

pytestmark = pytest.mark.backend

MODEL = MODELS / "yolov8_int8.tflite"
PHOTO = IMAGES / "chelsea.jpg"  # 451x300: letterboxed into 32x32 with bands top and bottom


def _reference(engine: Engine, settings: DetectionSettings) -> list:
    prepared = engine.prepare(PHOTO.read_bytes())
    raw = engine.run([prepared.tensor])[0]
    quant = engine.layout.tensors[0].quantization
    rows = (quant.scale * (raw[0].astype(np.float64) - quant.zero_point)).T
    found = reference_decode(
        rows,
        "yolov8",
        score_threshold=settings.score_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
    )
    boxes = place_boxes(np.array([b for _, _, b in found]).reshape(-1, 4), prepared.placement)
    return [(c, s, list(b)) for (c, s, _), b in zip(found, boxes.tolist())]


def test_engine_recognises_and_decodes_a_yolov8_head() -> None:
    engine = Engine.load(MODEL, overrides=InputOverrides(resize="letterbox"))
    assert (engine.layout.kind, engine.layout.format) == ("detection", "yolov8")
    settings = DetectionSettings(score_threshold=0.5, iou_threshold=0.3, max_detections=50)
    got = engine.predict(PHOTO.read_bytes(), detection=settings)
    want = _reference(engine, settings)
    assert got.kind == "detection" and len(want) >= 2
    assert [d.index for d in got.detections] == [c for c, _, _ in want]
    np.testing.assert_allclose([d.score for d in got.detections], [s for _, s, _ in want])
    np.testing.assert_allclose([d.box for d in got.detections], [b for _, _, b in want], atol=1e-6)
    fewer = engine.predict(PHOTO.read_bytes(), detection=DetectionSettings(0.5, 0.3, 1))
    assert len(fewer.detections) == 1


def test_predict_flags_reach_the_decoder(edge_runtime_cli) -> None:
    def run(*flags: object) -> list[dict]:  # type: ignore[type-arg]
        done = edge_runtime_cli(
            "predict", "--model", MODEL, "--resize", "letterbox", "--json", *flags, PHOTO
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["detections"]  # type: ignore[no-any-return]

    loose = run("--score-threshold", 0.5, "--iou-threshold", 0.9, "--max-detections", 100)
    strict = run("--score-threshold", 0.5, "--iou-threshold", 0.1)
    assert len(loose) > len(strict) >= 1
    assert set(loose[0]) == {"index", "label", "score", "box"}
    assert len(run("--threshold", 0.5, "--max-detections", 2)) == 2  # the older flag name
    assert run("--score-threshold", 1.0) == []


def test_out_of_range_thresholds_are_refused(edge_runtime_cli) -> None:
    done = edge_runtime_cli("predict", "--model", MODEL, "--iou-threshold", 1.5, PHOTO)
    assert done.returncode == 2  # argparse: the usage, then the one line that says why
    assert "--iou-threshold: expected a number within 0..1" in done.stderr.splitlines()[-1]


def test_inspect_names_the_yolo_layout(edge_runtime_cli) -> None:
    done = edge_runtime_cli("inspect", "--json", MODEL)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["output_kind"] == "detection"
    assert info["detection_format"] == {"format": "yolov8", "box_units": "normalized"}
    text = edge_runtime_cli("inspect", MODEL).stdout
    assert "detection (yolov8, boxes normalized)" in text
