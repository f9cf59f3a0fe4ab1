"""Output tensors to predictions: pure functions over numpy arrays.

The quantization maths widens the integer type before subtracting the zero point, so
``int8`` -128 minus a zero point of 127 cannot wrap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.inference.preprocess import IDENTITY, Placement
from edge_runtime.inference.types import Classification, Detection, Quantization
from edge_runtime.inference.yolo import Decoded


def dequantize(values: np.ndarray, quant: Quantization) -> np.ndarray:
    """``scale * (q - zero_point)`` as float32; float tensors pass through."""
    if not quant.is_quantized or values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    return (quant.scale * (values.astype(np.int32) - quant.zero_point)).astype(np.float32)


def _label(labels: Sequence[str] | None, index: int, offset: int) -> str | None:
    if labels is None:
        return None
    position = index + offset
    return labels[position] if 0 <= position < len(labels) else None


def label_offset(labels: Sequence[str] | None, classes: int) -> int:
    """1 when the labels carry a leading background entry the model does not output."""
    return 1 if labels is not None and len(labels) == classes + 1 else 0


def top_k(
    scores: np.ndarray, k: int, labels: Sequence[str] | None = None
) -> tuple[Classification, ...]:
    """The ``k`` highest scores, best first; ties go to the lower index."""
    flat = np.asarray(scores, dtype=np.float32).reshape(-1)
    k = max(0, min(k, flat.size))
    if k == 0:
        return ()
    order = np.lexsort((np.arange(flat.size), -flat))[:k]
    offset = label_offset(labels, flat.size)
    return tuple(
        Classification(int(i), _label(labels, int(i), offset), float(flat[i])) for i in order
    )


def detections(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    threshold: float = 0.3,
    placement: Placement = IDENTITY,
    max_detections: int | None = None,
) -> tuple[Detection, ...]:
    """SSD post-processing outputs (already dequantised) to detections on the image, the
    best ``max_detections`` of them (all with ``None``).

    ``boxes`` are ``[ymin, xmin, ymax, xmax]`` in model-input coordinates (0..1); they
    are mapped back onto the original image through ``placement`` and clipped.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    n = int(np.asarray(count).reshape(-1)[0]) if np.asarray(count).size else len(scores)
    n = max(0, min(n, len(scores), len(boxes), len(classes)))
    out = []
    for i in range(n):
        score = float(scores[i])
        if not score >= threshold:  # also drops NaN
            continue
        index = int(round(float(classes[i])))
        box = placement.box_to_image(tuple(float(v) for v in boxes[i]))  # type: ignore[arg-type]
        out.append(Detection(index, _label(labels, index, 0), score, box))
    out.sort(key=lambda d: -d.score)
    return tuple(out[:max_detections])


def place_boxes(boxes: np.ndarray, placement: Placement) -> np.ndarray:
    """``[K, 4]`` ``[ymin, xmin, ymax, xmax]`` boxes in model-input coordinates (0..1)
    onto the original image, clipped to 0..1 (``Placement.box_to_image`` for many)."""
    scale = np.array([placement.y_scale, placement.x_scale] * 2, dtype=np.float32)
    offset = np.array([placement.y_offset, placement.x_offset] * 2, dtype=np.float32)
    placed: np.ndarray = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale + offset
    return placed.clip(0.0, 1.0)


def yolo_detections(
    decoded: Decoded,
    *,
    labels: Sequence[str] | None = None,
    placement: Placement = IDENTITY,
) -> tuple[Detection, ...]:
    """Decoded YOLO detections (best first) as detections on the original image."""
    boxes = place_boxes(decoded.boxes, placement).tolist()
    offset = 0 if decoded.class_count is None else label_offset(labels, decoded.class_count)
    return tuple(
        Detection(index, _label(labels, index, offset), score, (b[0], b[1], b[2], b[3]))
        for index, score, b in zip(
            decoded.classes.astype(int).tolist(), decoded.scores.tolist(), boxes
        )
    )
