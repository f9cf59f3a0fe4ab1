"""YOLO output tensors to boxes, scores and classes: pure numpy, no loop per box.

Layouts (the manifest's ``outputs.format`` names which; nothing here guesses):

- ``yolov5``: ``[1, N, 5 + classes]`` rows of centre x, centre y, width, height,
  objectness, class scores; a box's score is objectness times its best class score.
- ``yolov8`` (also YOLO11): ``[1, 4 + classes, N]`` columns of centre x, centre y, width,
  height, class scores; no objectness.
- ``yolo-end2end``: ``[1, K, 6]`` rows of x1, y1, x2, y2, score, class from a model with
  NMS built in (YOLOv10, YOLO26, Ultralytics' ``nms=True`` exports); only the threshold
  and ``max_detections`` apply.

Box coordinates are read in the head's ``box_units``: ``normalized`` (0..1 of the model
input, as Ultralytics' TFLite export writes them) or ``pixels`` of the model input (its
ONNX export). Quantized outputs are thresholded in the integer domain and only the
candidates that pass are dequantised, so an int8 ``[1, 84, 8400]`` head costs one max over
its class rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import ModelError
from edge_runtime.inference.nms import nms
from edge_runtime.inference.types import DetectionSettings, Quantization


@dataclass(frozen=True)
class YoloHead:
    """How to read one YOLO output tensor: its layout, its box units and the model input
    size that pixel units refer to."""

    format: str  # yolov5 | yolov8 | yolo-end2end
    box_units: str  # normalized | pixels
    input_height: int
    input_width: int


@dataclass(frozen=True)
class Decoded:
    """Kept detections, best first, in model-input coordinates normalised to 0..1:
    ``boxes`` ``[K, 4]`` ``[ymin, xmin, ymax, xmax]``, ``scores`` ``[K]``, ``classes`` ``[K]``."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_count: int | None  # classes the head scores (None for end-to-end exports)


def decode(
    output: np.ndarray, quant: Quantization, head: YoloHead, settings: DetectionSettings
) -> Decoded:
    """One YOLO output tensor (raw: int8/uint8 as the interpreter gives it, or float) to
    the detections that pass the score threshold and per-class NMS.

    Raises:
        ModelError: the tensor does not have the layout ``head.format`` names.
    """
    values = np.asarray(output)
    if head.format == "yolov8":
        rows, count = _dims(values, head.format, minimum=5)
        boxes, scores, classes = _yolov8(values.reshape(rows, count), quant, settings)
        class_count: int | None = rows - 4
    elif head.format == "yolov5":
        count, cols = _dims(values, head.format, minimum=6)
        boxes, scores, classes = _yolov5(values.reshape(count, cols), quant, settings)
        class_count = cols - 5
    elif head.format == "yolo-end2end":
        count, cols = _dims(values, head.format, minimum=6)
        if cols != 6:
            raise ModelError(f"a yolo-end2end output is [1, K, 6], got {list(values.shape)}")
        return _end2end(values.reshape(count, 6), quant, head, settings)
    else:
        raise ModelError(f"unknown YOLO output format {head.format!r}")
    corners = _to_corners(boxes, head)
    keep = nms(
        corners,
        scores,
        classes,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
    )
    return Decoded(corners[keep], scores[keep], classes[keep], class_count)


def _dims(values: np.ndarray, fmt: str, *, minimum: int) -> tuple[int, int]:
    shape = values.shape
    dims = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape
    if len(dims) != 2 or min(dims) < 1:
        raise ModelError(f"a {fmt} output is a 3-D tensor [1, a, b], got {list(shape)}")
    small = dims[0] if fmt == "yolov8" else dims[1]
    if small < minimum:
        raise ModelError(
            f"a {fmt} output needs at least {minimum} values per box, got {list(shape)}"
        )
    return int(dims[0]), int(dims[1])


def _threshold_raw(threshold: float, quant: Quantization) -> float:
    """The threshold in the tensor's own units (scores rise with the raw value, scale > 0)."""
    if not quant.is_quantized:
        return threshold
    return threshold / quant.scale + quant.zero_point


def _real(values: np.ndarray, quant: Quantization) -> np.ndarray:
    if not quant.is_quantized or values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    return (quant.scale * (values.astype(np.float32) - quant.zero_point)).astype(np.float32)


def _yolov8(
    table: np.ndarray, quant: Quantization, settings: DetectionSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    class_rows = table[4:]
    best = class_rows.max(axis=0)
    passed = np.flatnonzero(best >= _threshold_raw(settings.score_threshold, quant))
    if quant.is_quantized:  # the float comparison may let through a rounding neighbour
        passed = passed[_real(best[passed], quant) >= settings.score_threshold]
    classes = class_rows[:, passed].argmax(axis=0)
    scores = _real(best[passed], quant)
    boxes = _real(table[:4, passed], quant).T
    return boxes, scores, classes


def _yolov5(
    table: np.ndarray, quant: Quantization, settings: DetectionSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # objectness bounds the score (class scores are at most 1): filter on it first
    rows = table[table[:, 4] >= _threshold_raw(settings.score_threshold, quant)]
    real = _real(rows, quant)
    class_scores = real[:, 5:]
    classes = class_scores.argmax(axis=1)
    scores = real[:, 4] * class_scores[np.arange(real.shape[0]), classes]
    passed = scores >= settings.score_threshold
    return real[passed, :4], scores[passed], classes[passed]


def _to_corners(xywh: np.ndarray, head: YoloHead) -> np.ndarray:
    """Centre/size boxes to ``[ymin, xmin, ymax, xmax]`` normalised to the model input."""
    cx, cy, w, h = (xywh[:, i] for i in range(4))
    corners = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1)
    return _normalised(corners, head)


def _normalised(corners: np.ndarray, head: YoloHead) -> np.ndarray:
    if head.box_units == "pixels":
        size = np.array(
            [head.input_height, head.input_width] * 2,
            dtype=np.float32,
        )
        corners = corners / size
    return corners.astype(np.float32, copy=False)


def _end2end(
    table: np.ndarray, quant: Quantization, head: YoloHead, settings: DetectionSettings
) -> Decoded:
    real = _real(table, quant)
    passed = np.flatnonzero(real[:, 4] >= settings.score_threshold)
    order = passed[np.lexsort((passed, -real[passed, 4]))][: settings.max_detections]
    x1, y1, x2, y2 = (real[order, i] for i in range(4))
    corners = _normalised(np.stack([y1, x1, y2, x2], axis=1), head)
    classes = np.rint(real[order, 5]).astype(np.int64)
    return Decoded(corners, real[order, 4], classes, None)
