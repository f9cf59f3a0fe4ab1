"""ONNX exports with NMS built in, cut back to their raw YOLO head (``converter.onnx_nms``),
without converting: which tensor is taken, what the NMS carried, and that the device's
decoder on the cut model's float output gives the export's own detections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.inference.types import DetectionSettings, Quantization
from edge_runtime.inference.yolo import YoloHead, decode
from tests.support import onnx_nms_models as exports

pytestmark = [pytest.mark.converter]

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

SIZE = 64
PHOTOS = ("chelsea", "coffee", "astronaut")


def _photo(name: str) -> np.ndarray:
    """A real photo as the models' NCHW float input (pixels / 255)."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(getattr(data, name)()).convert("RGB").resize((SIZE, SIZE))
    return np.asarray(image, np.float32).transpose(2, 0, 1)[None] / 255


def _run(model: bytes | Path, x: np.ndarray) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": x})[0])


def _plain(tmp_path: Path, layout: str) -> Path:
    from tests.support import torch_models

    model = getattr(torch_models, f"tiny_{layout}")()
    return exports.export_plain(model, tmp_path / f"{layout}.onnx", SIZE)


def _cut(path: Path) -> tuple[Any, bytes, Any]:
    from converter import onnx_nms, onnx_source

    graph, data = onnx_source.load(path)
    return onnx_nms.cut_exported_nms(graph, data)


@pytest.mark.parametrize(
    "layout, append, carried",
    [
        ("yolov8", "with_nms", (exports.IOU, exports.SCORE, exports.MAX_BOXES)),
        ("yolov5", "with_nms", (exports.IOU, exports.SCORE, exports.MAX_BOXES)),
        ("yolov8", "with_masked_nms", (exports.MASKED_IOU, None, exports.MAX_BOXES)),
    ],
)
def test_the_cut_model_is_the_plain_export(
    tmp_path: Path, layout: str, append: str, carried: tuple[float, float | None, int]
) -> None:
    plain = _plain(tmp_path, layout)
    if append == "with_nms":
        with_nms = exports.with_nms(plain, tmp_path / "nms.onnx", layout)
    else:
        with_nms = exports.with_masked_nms(plain, tmp_path / "nms.onnx")
    graph, data, nms = _cut(with_nms)
    head, shape = exports.head_of(plain)
    assert nms is not None and nms.head == head and graph.outputs == (head,)
    assert nms.node in ("exported_nms", "masked_nms")
    assert (nms.iou_threshold, nms.score_threshold, nms.max_boxes_per_class) == carried
    assert "NonMaxSuppression" not in {n.op for n in graph.nodes}
    for name in PHOTOS:
        x = _photo(name)
        cut = _run(data, x)
        assert list(cut.shape) == shape
        np.testing.assert_array_equal(cut, _run(plain, x))


def test_a_plain_export_is_left_as_it_is(tmp_path: Path) -> None:
    plain = _plain(tmp_path, "yolov8")
    graph, data, nms = _cut(plain)
    assert nms is None and data == plain.read_bytes()


def test_the_device_decoder_on_the_cut_head_gives_the_exports_detections(tmp_path: Path) -> None:
    # the masked export keeps each box's best class above a confidence and runs NMS per
    # class (boxes offset by class), as the device's decoder does: in float, the same rows
    with_nms = exports.with_masked_nms(_plain(tmp_path, "yolov8"), tmp_path / "nms.onnx")
    _, data, _ = _cut(with_nms)
    head = YoloHead("yolov8", "normalized", SIZE, SIZE)
    settings = DetectionSettings(exports.MASKED_CONF, exports.MASKED_IOU, exports.MAX_BOXES)
    for name in PHOTOS:
        x = _photo(name)
        export = _run(with_nms, x)  # [n, 6]: x1, y1, x2, y2, score, class
        export = export[np.lexsort((export[:, 1], export[:, 0], -export[:, 4]))]
        got = decode(_run(data, x), Quantization(), head, settings)
        assert len(export) == len(got.scores) > 0, name
        ours = np.column_stack([got.boxes[:, [1, 0, 3, 2]], got.scores, got.classes])
        ours = ours[np.lexsort((ours[:, 1], ours[:, 0], -ours[:, 4]))]
        np.testing.assert_allclose(ours, export, atol=1e-5)


def test_an_end_to_end_head_is_cut_back_to_a_yolov8_head(tmp_path: Path) -> None:
    # YOLOv10-style: TopK picks rows of a head whose boxes are corners; the cut model ends
    # at that head, its corners turned back into centres: the plain export's output
    end_to_end = exports.export_end_to_end(tmp_path / "e2e.onnx", keep=10)
    plain = _plain(tmp_path, "yolov8")
    graph, data, nms = _cut(end_to_end)
    assert nms is not None and (nms.op, nms.top_k) == ("TopK", 10)
    assert not {"TopK", "GatherElements"} & {n.op for n in graph.nodes}
    head = YoloHead("yolov8", "normalized", SIZE, SIZE)
    settings = DetectionSettings(0.25, 0.45, 10)
    for name in PHOTOS:
        x = _photo(name)
        cut = _run(data, x)
        np.testing.assert_allclose(cut, _run(plain, x), atol=1e-6)
        # the export's rows: its 10 best (box, class) pairs; the device's: each box's best
        # class, 10 best boxes. A device detection scoring above the export's last row
        # is one of them (no boxes of the tiny head overlap, so NMS keeps them all)
        export = _run(end_to_end, x)[0]  # [10, 6]: x1, y1, x2, y2, score, class
        got = decode(cut, Quantization(), head, settings)
        above = got.scores > export[:, 4].min() + 1e-6
        assert above.any(), name
        for box, score, cls in zip(got.boxes[above], got.scores[above], got.classes[above]):
            row = np.r_[box[[1, 0, 3, 2]], score, cls]
            assert np.abs(export - row).max(axis=1).min() < 1e-5, (name, row, export)


def test_a_topk_that_preselects_for_nms_leaves_the_nms_export_as_one() -> None:
    """A graph that pre-selects its candidates with ``TopK`` before ``NonMaxSuppression``
    (Ultralytics' ``nms=True`` does for TFLite and OBB exports) is cut at its NMS: its head
    keeps centre-and-size boxes, which the corner conversion of an end-to-end TopK head
    would turn into wrong ones."""
    from converter.onnx_nms import NMS_OP, find
    from converter.onnx_source import Graph, Node

    nodes = (
        Node("Conv", "head", ("images", "w"), ("head",), {}),
        Node("TopK", "preselect", ("scores", "k"), ("top_scores", "top_indices"), {}),
        Node(NMS_OP, "nms", ("boxes", "top_scores"), ("selected",), {}),
    )
    graph = Graph("images", (1, 3, SIZE, SIZE), ("selected",), nodes, {})

    found = find(graph)

    assert found is not None and found.name == "nms"
