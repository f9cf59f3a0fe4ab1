"""Dequantisation, top-k, detections and output layout: pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.errors import LabelsError, ModelError
from edge_runtime.inference.labels import check_labels, parse_labels
from edge_runtime.inference.outputs import resolve_layout
from edge_runtime.inference.postprocess import dequantize, detections, top_k
from edge_runtime.inference.preprocess import Placement
from edge_runtime.inference.types import Quantization, TensorSpec


def test_dequantize_widens_before_subtracting() -> None:
    q = np.array([-128, 0, 127], dtype=np.int8)
    out = dequantize(q, Quantization(0.5, 127))
    assert out.dtype == np.float32
    assert out.tolist() == [-127.5, -63.5, 0.0]  # no int8 wrap-around
    u = np.array([0, 255], dtype=np.uint8)
    assert dequantize(u, Quantization(1 / 256, 0)).tolist() == [0.0, 255 / 256]
    f = np.array([0.25], dtype=np.float32)
    assert dequantize(f, Quantization()) is f or dequantize(f, Quantization()).tolist() == [0.25]


def test_top_k_orders_by_score_then_index_and_labels() -> None:
    scores = np.array([[0.1, 0.5, 0.2, 0.5]], dtype=np.float32)
    top = top_k(scores, 3, ("a", "b", "c", "d"))
    assert [(c.index, c.label) for c in top] == [(1, "b"), (3, "d"), (2, "c")]
    assert top_k(scores, 10) and len(top_k(scores, 10)) == 4
    assert top[0].score == pytest.approx(0.5)


def test_top_k_with_background_label_shifts_by_one() -> None:
    top = top_k(np.array([0.0, 1.0]), 1, ("background", "cat", "dog"))
    assert top[0].label == "dog"


def test_detections_threshold_mapping_and_count() -> None:
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.3, 0.3]]])
    classes = np.array([[1.0, 0.0, 2.0]])
    scores = np.array([[0.9, 0.2, 0.8]])
    count = np.array([2.0])  # the third row is past the count and must be ignored
    found = detections(boxes, classes, scores, count, labels=("a", "b", "c"), threshold=0.3)
    assert [(d.index, d.label) for d in found] == [(1, "b")]
    crop = Placement(1.0, 0.0, 0.5, 0.25)  # model x covers image x 0.25..0.75
    mapped = detections(boxes, classes, scores, np.array([1.0]), placement=crop)
    assert mapped[0].box == pytest.approx((0.1, 0.3, 0.5, 0.5))


def test_detections_ignore_nan_scores() -> None:
    found = detections(np.zeros((1, 1, 4)), np.zeros((1, 1)), np.array([[np.nan]]), np.array([1.0]))
    assert found == ()


def test_parse_labels_plain_and_indexed() -> None:
    assert parse_labels("cat\ndog\n\n") == ("cat", "dog")
    assert parse_labels("0 person\n2 car\n") == ("person", "", "car")
    assert parse_labels("0: person\n1: bicycle\n") == ("person", "bicycle")


def test_check_labels_length() -> None:
    check_labels(("a",) * 10, 10, "x")
    check_labels(("a",) * 11, 10, "x")
    with pytest.raises(LabelsError, match="has 3 labels but the model outputs 10 classes"):
        check_labels(("a",) * 3, 10, "labels.txt")


def spec(name: str, shape: tuple, index: int = 0) -> TensorSpec:  # type: ignore[type-arg]
    return TensorSpec(name, index, shape, "float32")


def test_layout_classification_raw_and_detection_by_name() -> None:
    assert resolve_layout([spec("probs", (1, 10))]).kind == "classification"
    assert resolve_layout([spec("seg", (1, 8, 8, 3))]).kind == "raw"
    det = [
        spec("num_detections", (1,), 0),
        spec("detection_boxes", (1, 5, 4), 1),
        spec("detection_scores", (1, 5), 2),
        spec("detection_classes", (1, 5), 3),
    ]
    layout = resolve_layout(det)
    assert layout.kind == "detection"
    assert layout.tensor("boxes").name == "detection_boxes"
    assert layout.tensor("count").name == "num_detections"


def test_layout_from_detection_op_order_beats_names() -> None:
    outs = [
        spec("a", (1, 5, 4), 10),
        spec("b", (1, 5), 11),
        spec("c", (1, 5), 12),
        spec("d", (1,), 13),
    ]
    layout = resolve_layout(outs, detection_op_outputs=(10, 12, 11, 13))
    assert layout.tensor("classes").name == "c" and layout.tensor("scores").name == "b"


def test_layout_from_manifest() -> None:
    outs = [spec("x", (1, 5)), spec("y", (1, 5, 4))]
    manifest = {
        "kind": "detection",
        "tensors": [{"name": "x", "role": "scores"}, {"name": "y", "role": "boxes"}],
    }
    with pytest.raises(ModelError, match="lack the roles classes, count"):
        resolve_layout(outs, manifest_outputs=manifest)
    assert resolve_layout(outs, manifest_outputs={"kind": "raw"}).kind == "raw"
    with pytest.raises(ModelError, match="describes 1 output tensors, the model has 2"):
        resolve_layout(outs, manifest_outputs={"kind": "raw", "tensors": [{}]})
