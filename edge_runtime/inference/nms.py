"""Class-aware non-maximum suppression over ``[ymin, xmin, ymax, xmax]`` boxes, in numpy.

Greedy NMS keeps a box when no kept box of its class with a higher score overlaps it by
more than the IoU threshold. Here the overlaps of every pair of boxes of one class are
computed at once, and the rule is solved as a fixed point over those pairs: start with
every box kept, then repeatedly mark as suppressed each box that a kept better box
overlaps. The best box is right after one step, and each step
settles at least the next box in score order, so the loop ends (in practice after as many
steps as the longest chain of "A suppresses B which would suppress C", a handful) with
exactly greedy NMS's answer, and no Python loop runs per box.
"""

from __future__ import annotations

import numpy as np

#: At most this many candidates, the best by score, enter NMS (in the worst case, all of one
#: class, 1024 candidates are half a million pairs, some milliseconds on a Pi 4 core).
MAX_CANDIDATES = 1024


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of ``a[k]`` and ``b[k]`` for ``[K, 4]`` ``[ymin, xmin, ymax,
    xmax]`` boxes, ``[K]`` float32; empty or inverted boxes overlap nothing."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    height = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    width = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(height, 0, None) * np.clip(width, 0, None)
    union = _area(a) + _area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio: np.ndarray = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
    return ratio.astype(np.float32)


def _area(boxes: np.ndarray) -> np.ndarray:
    heights: np.ndarray = (boxes[:, 2] - boxes[:, 0]).clip(0, None)
    widths: np.ndarray = (boxes[:, 3] - boxes[:, 1]).clip(0, None)
    area: np.ndarray = heights * widths
    return area


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    *,
    iou_threshold: float,
    max_detections: int,
) -> np.ndarray:
    """Indices of the boxes greedy per-class NMS keeps, best score first, at most
    ``max_detections``. Equal scores keep the lower index first."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    count = scores.size
    if count == 0 or max_detections < 1:
        return np.zeros(0, dtype=np.int64)
    best = np.lexsort((np.arange(count), -scores))[:MAX_CANDIDATES]
    # grouped by class, best first within each class
    grouped = best[np.argsort(np.asarray(classes).reshape(-1)[best], kind="stable")]
    better, worse = _pairs_within_classes(np.asarray(classes).reshape(-1)[grouped])
    ordered = np.asarray(boxes).reshape(-1, 4)[grouped]
    over = iou(ordered[better], ordered[worse]) > iou_threshold
    better, worse = better[over], worse[over]
    keep = np.ones(grouped.size, dtype=bool)
    for _ in range(grouped.size):  # a bound; it settles long before
        settled = np.ones(grouped.size, dtype=bool)
        settled[worse[keep[better]]] = False
        if np.array_equal(settled, keep):
            break
        keep = settled
    kept = grouped[keep]
    return kept[np.lexsort((kept, -scores[kept]))][:max_detections]


def _pairs_within_classes(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For classes grouped into runs, every pair of positions ``(p, q)``, ``p < q``, in
    the same run, as two index arrays, built without a loop."""
    n = classes.size
    starts = np.flatnonzero(np.r_[True, classes[1:] != classes[:-1]])
    ends = np.r_[starts[1:], n]
    counts = np.repeat(ends, ends - starts) - np.arange(n) - 1  # later positions in the run
    better = np.repeat(np.arange(n), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    worse = better + 1 + (np.arange(better.size) - first)
    return better, worse
