"""A reference YOLO decoder written box by box (the textbook greedy NMS), independent of
the runtime's vectorised one, for the tests to compare against."""

from __future__ import annotations

import numpy as np


def iou(a: list[float], b: list[float]) -> float:
    h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = h * w
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_decode(
    rows: np.ndarray,
    fmt: str,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    pixels_of: tuple[int, int] | None = None,
) -> list[tuple[int, float, list[float]]]:
    """``rows``: float ``[N, 4 + (1) + classes]``, one row per candidate (``yolov5`` rows
    carry objectness). ``pixels_of``: the input (height, width) when boxes are in pixels.
    Returns ``[(class, score, [ymin, xmin, ymax, xmax] normalised)]``, best first."""
    candidates = []
    for row in np.asarray(rows, dtype=np.float64).tolist():
        cx, cy, w, h = row[:4]
        cls_scores = [row[4] * s for s in row[5:]] if fmt == "yolov5" else row[4:]
        best = max(range(len(cls_scores)), key=lambda i: (cls_scores[i], -i))
        score = cls_scores[best]
        if not score >= score_threshold:
            continue
        box = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
        if pixels_of is not None:
            box = [v / pixels_of[i % 2] for i, v in enumerate(box)]
        candidates.append((best, score, box))
    candidates.sort(key=lambda c: -c[1])
    kept: list[tuple[int, float, list[float]]] = []
    for c in candidates:
        if all(k[0] != c[0] or iou(k[2], c[2]) <= iou_threshold for k in kept):
            kept.append(c)
    return kept[:max_detections]
