"""``[model]``'s score_threshold, iou_threshold and max_detections reach the engine the
daemon serves, at start and after a model swap (both load through ``load_engine``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.daemon.app import load_engine
from edge_runtime.daemon.config import parse_config
from edge_runtime.inference.types import DetectionSettings
from tests.conftest import IMAGES, MODELS

pytestmark = pytest.mark.backend

MODEL = MODELS / "yolov8_int8.tflite"
PHOTO = IMAGES / "chelsea.jpg"


def detections(tmp_path: Path, **model: object) -> tuple[DetectionSettings, int]:
    config = parse_config(
        {"device_id": "pi-01", "state_dir": str(tmp_path), "model": {"path": str(MODEL), **model}}
    )
    engine = load_engine(config, MODEL)
    try:
        return engine.detection, len(engine.predict(PHOTO.read_bytes()).detections)
    finally:
        engine.close()


def test_the_model_tables_detection_keys_reach_the_engine(tmp_path: Path) -> None:
    default, found = detections(tmp_path)
    assert default == DetectionSettings(0.25, 0.45, 100) and found >= 2
    settings, capped = detections(
        tmp_path, score_threshold=0.5, iou_threshold=0.3, max_detections=1
    )
    assert settings == DetectionSettings(0.5, 0.3, 1) and capped == 1
    _, none = detections(tmp_path, score_threshold=0.999)
    assert none == 0
