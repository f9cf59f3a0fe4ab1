"""Drift statistics: what a model sees and answers, as histograms, compared with the
reference its converter recorded, by the population stability index (PSI).

Pure functions and small value types, shared by ``edge-convert`` (the reference, in the
manifest) and the daemon (the same statistics over windows of served requests):

- ``top1``: the share of each top-1 class (a detection model: the best detection's
  class, plus a last bucket for "nothing detected");
- ``score``: a histogram of the top-1 score (a detection model: also of the number of
  detections);
- ``input``: histograms of the input's brightness and contrast, measured on the model's
  input tensor in units of its dtype's range (0..1), so that the converter and the device,
  which make the same tensor from the same image, measure the same thing.

PSI over a window of ``n`` requests against a reference of ``m`` images is noisy: with
``k`` bins and no drift at all, ``PSI * (1/n + 1/m)^-1`` is close to a chi-square variable
with ``k - 1`` degrees of freedom (PSI is the symmetric Kullback-Leibler divergence, whose
second-order term is Pearson's statistic). ``alert_bound`` therefore adds to the
configured ``psi_alert`` the chi-square quantile at the significance level, scaled by
``1/n + 1/m``: small windows and small references need a larger PSI before it counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

#: Bins of the top-1 score (0..1), of brightness (0..1) and of contrast (0..0.5).
SCORE_BINS = 10
BRIGHTNESS_BINS = 10
CONTRAST_BINS = 10
CONTRAST_MAX = 0.5
#: Detection counts: 0, 1, 2, 3, 4, 5-7, 8-15, 16 or more.
COUNT_EDGES = (1, 2, 3, 4, 5, 8, 16)
#: Counts added to every bin before comparing: empty bins do not make PSI infinite.
SMOOTHING = 0.5
#: Most values a tensor's brightness is measured on (larger inputs are subsampled).
INPUT_SAMPLES = 4096
METRICS = ("top1", "score", "input")


@dataclass(frozen=True)
class Observation:
    """One served request: its top-1 class (None: nothing detected), top-1 score, number
    of detections (None for a classifier) and the input's brightness and contrast."""

    top1: int | None
    score: float | None
    count: int | None
    brightness: float
    contrast: float


def input_summary(tensor: np.ndarray) -> tuple[float, float]:
    """Brightness (mean) and contrast (standard deviation) of an input tensor, in units
    of its dtype's range: 0..1 for integer tensors, ``(v + 1) / 2`` for float ones.
    One conversion, a sum and a dot product: about 4 us on an 8x8 input, 30 us on a
    subsampled 224x224x3 one (numpy's ``mean`` and ``std`` took 18 and 360)."""
    t = np.asarray(tensor)
    if t.ndim == 4 and t.size > INPUT_SAMPLES * t.shape[-1]:
        step = math.ceil(math.sqrt(t.shape[1] * t.shape[2] / INPUT_SAMPLES))
        t = t[:, ::step, ::step, :]
    if t.dtype.kind in "iu":
        info = np.iinfo(t.dtype)
        low, span = float(info.min), float(info.max) - float(info.min)
    else:
        low, span = -1.0, 2.0
    flat = t.astype(np.float32).ravel()
    n = max(flat.size, 1)
    mean = float(flat.sum(dtype=np.float64)) / n
    variance = max(float(np.dot(flat, flat)) / n - mean * mean, 0.0)
    brightness = min(1.0, max(0.0, (mean - low) / span))
    return brightness, math.sqrt(variance) / span


def observation(answer: Mapping[str, Any], tensor: np.ndarray) -> Observation:
    """The observation of one ``predict --json`` answer and the input tensor it came from."""
    brightness, contrast = input_summary(tensor)
    if "detections" in answer:
        found = answer["detections"]
        best = max(found, key=lambda d: d["score"], default=None)
        return Observation(
            None if best is None else int(best["index"]),
            None if best is None else float(best["score"]),
            len(found),
            brightness,
            contrast,
        )
    top = answer.get("top") or []
    if top:
        return Observation(int(top[0]["index"]), float(top[0]["score"]), None, brightness, contrast)
    return Observation(None, None, None, brightness, contrast)


def _bin(value: float, bins: int, top: float = 1.0) -> int:
    return min(bins - 1, max(0, int(value / top * bins)))


def _count_bin(count: int) -> int:
    return sum(count >= edge for edge in COUNT_EDGES)


class Histograms:
    """Counts of observations (not thread-safe: one owner adds, or a lock around it)."""

    def __init__(self, classes: int, detection: bool) -> None:
        """``classes``: top-1 buckets (a detection model's gets one more: nothing)."""
        self.classes = classes
        self.detection = detection
        self.n = 0
        # plain lists: adding one is a tenth of what a numpy element costs
        self.top1: Any = [0] * (classes + (1 if detection else 0))
        self.score: Any = [0] * SCORE_BINS
        self.count: Any = [0] * (len(COUNT_EDGES) + 1)
        self.brightness: Any = [0] * BRIGHTNESS_BINS
        self.contrast: Any = [0] * CONTRAST_BINS

    def add(self, obs: Observation) -> None:
        self.n += 1
        if obs.top1 is not None and 0 <= obs.top1 < self.classes:
            self.top1[obs.top1] += 1
        elif self.detection:
            self.top1[-1] += 1
        if obs.score is not None:
            self.score[_bin(obs.score, SCORE_BINS)] += 1
        if obs.count is not None:
            self.count[_count_bin(obs.count)] += 1
        self.brightness[_bin(obs.brightness, BRIGHTNESS_BINS)] += 1
        self.contrast[_bin(obs.contrast, CONTRAST_BINS, CONTRAST_MAX)] += 1

    def parts(self) -> dict[str, np.ndarray]:
        """The histograms by name (``count`` only for detection models)."""
        out = {
            "top1": np.asarray(self.top1, dtype=np.int64),
            "score": np.asarray(self.score, dtype=np.int64),
            "brightness": np.asarray(self.brightness, dtype=np.int64),
            "contrast": np.asarray(self.contrast, dtype=np.int64),
        }
        if self.detection:
            out["count"] = np.asarray(self.count, dtype=np.int64)
        return out

    def to_reference(self, source: str) -> dict[str, Any]:
        """The manifest's ``monitoring.reference``: shares per histogram, and the number
        of images they come from."""
        n = max(self.n, 1)
        doc: dict[str, Any] = {"images": self.n, "source": source, "detection": self.detection}
        for name, counts in self.parts().items():
            total = max(int(counts.sum()), 1) if name in ("top1", "score", "count") else n
            doc[name] = [round(int(c) / total, 6) for c in counts]
        return doc


@dataclass(frozen=True)
class Reference:
    """A manifest's ``monitoring.reference``, read: shares per histogram and the number
    of images."""

    images: int
    detection: bool
    shares: Mapping[str, tuple[float, ...]]

    @property
    def classes(self) -> int:
        return len(self.shares["top1"]) - (1 if self.detection else 0)

    @staticmethod
    def parse(doc: Any) -> Reference | None:
        """The reference in ``doc``, or None when there is none or it is malformed."""
        if not isinstance(doc, Mapping):
            return None
        images = doc.get("images")
        detection = bool(doc.get("detection", False))
        names = ("top1", "score", "brightness", "contrast") + (("count",) if detection else ())
        shares: dict[str, tuple[float, ...]] = {}
        for name in names:
            values = doc.get(name)
            if not isinstance(values, list) or not values:
                return None
            if not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values):
                return None
            shares[name] = tuple(float(v) for v in values)
        expected = {
            "score": SCORE_BINS,
            "brightness": BRIGHTNESS_BINS,
            "contrast": CONTRAST_BINS,
            "count": len(COUNT_EDGES) + 1,
        }
        if any(len(shares[k]) != v for k, v in expected.items() if k in shares):
            return None
        if not isinstance(images, int) or isinstance(images, bool) or images < 1:
            return None
        return Reference(images, detection, shares)


def psi(reference: Sequence[float], counts: Sequence[int] | np.ndarray, ref_images: int) -> float:
    """Population stability index of ``counts`` against the reference shares (both
    smoothed by ``SMOOTHING`` counts per bin): ``sum((q - p) * ln(q / p))``."""
    k = len(reference)
    observed = np.asarray(counts, dtype=np.float64)
    n = float(observed.sum())
    if n == 0 or k < 2:
        return 0.0
    p = (np.asarray(reference, dtype=np.float64) * ref_images + SMOOTHING) / (
        ref_images + SMOOTHING * k
    )
    q = (observed + SMOOTHING) / (n + SMOOTHING * k)
    return float(np.sum((q - p) * np.log(q / p)))


def chi2_quantile(level: float, dof: int) -> float:
    """The ``level`` quantile of a chi-square distribution (Wilson-Hilferty, within a
    few percent for dof >= 1 at the levels used here)."""
    if dof <= 0:
        return 0.0
    z = NormalDist().inv_cdf(level)
    h = 2.0 / (9.0 * dof)
    return float(dof * max(0.0, 1.0 - h + z * math.sqrt(h)) ** 3)


def alert_bound(
    psi_alert: float, bins: int, window: int, ref_images: int, significance: float
) -> float:
    """The PSI over which a window counts as drifted: ``psi_alert`` plus what chance alone
    reaches once in ``1 / significance`` windows of this size."""
    if window <= 0:
        return math.inf
    noise = chi2_quantile(1.0 - significance, bins - 1) * (1.0 / window + 1.0 / ref_images)
    return psi_alert + noise


@dataclass(frozen=True)
class Comparison:
    """One window against the reference: each metric's PSI and bound."""

    window: int
    psi: Mapping[str, float]
    bound: Mapping[str, float]

    @property
    def over(self) -> tuple[str, ...]:
        return tuple(m for m in METRICS if self.psi.get(m, 0.0) > self.bound.get(m, math.inf))

    def worst(self) -> str:
        """The metric furthest over (or nearest to) its bound."""
        return max(METRICS, key=lambda m: self.psi.get(m, 0.0) / self.bound.get(m, math.inf))


def compare(
    reference: Reference, window: Histograms, *, psi_alert: float, significance: float
) -> Comparison:
    """Each metric's PSI (the worse of its histograms) and its size-aware bound."""
    parts = window.parts()
    groups = {"top1": ("top1",), "score": ("score", "count"), "input": ("brightness", "contrast")}
    values: dict[str, float] = {}
    bounds: dict[str, float] = {}
    for metric, names in groups.items():
        worst_ratio = -1.0
        for name in names:
            if name not in parts or name not in reference.shares:
                continue
            shares = reference.shares[name]
            counts = parts[name]
            n = int(counts.sum())
            if n == 0:
                continue
            value = psi(shares, counts, reference.images)
            bound = alert_bound(psi_alert, len(shares), n, reference.images, significance)
            if value / bound > worst_ratio:
                worst_ratio = value / bound
                values[metric], bounds[metric] = value, bound
    return Comparison(window.n, values, bounds)
