"""The manifest's ``monitoring.reference``: what the int8 model's inputs and outputs look
like on the validation (else calibration) images, in the statistics the daemon keeps
over served requests (``edge_runtime.telemetry.drift``).

A detection model's reference is recorded for the SSD layout (boxes, classes, scores,
count), scores counted from the daemon's default ``score_threshold``; a raw-output model,
or a detection layout decoded elsewhere, gets none (the daemon then does not watch it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from converter.runner import ModelRunner
from converter.validation import Sample, to_tensor
from edge_runtime.inference.types import DEFAULT_DETECTION, InputSpec
from edge_runtime.telemetry.drift import Histograms, Observation, input_summary

SSD_ROLES = frozenset({"boxes", "classes", "scores", "count"})


def reference(
    runner: ModelRunner,
    samples: Sequence[Sample],
    spec: InputSpec,
    *,
    kind: str,
    roles: Mapping[int, str],
    source: str,
) -> dict[str, Any] | None:
    """The reference over ``samples`` (as the device would prepare them), or None when
    this kind of model is not watched."""
    detection = kind == "detection"
    if kind not in ("classification", "detection") or (
        detection and set(roles.values()) != SSD_ROLES
    ):
        return None
    by_index = {o.index: pos for pos, o in enumerate(runner.outputs)}
    position = {role: by_index[i] for i, role in roles.items() if i in by_index}
    if detection:
        classes = _detection_classes(runner, samples, spec, position)
    else:
        classes = int(np.prod(runner.outputs[0].shape))
    q_spec = runner.spec(spec)
    histograms = Histograms(classes, detection)
    for sample in samples:
        tensor = to_tensor(sample, q_spec)
        values = runner.dequantize(runner.run(tensor))
        histograms.add(_observe(values, tensor, detection, position))
    return histograms.to_reference(source)


def _observe(
    values: list[np.ndarray], tensor: np.ndarray, detection: bool, position: Mapping[str, int]
) -> Observation:
    brightness, contrast = input_summary(tensor)
    if not detection:
        scores = np.ravel(values[0])
        best = int(np.argmax(scores))
        return Observation(best, float(scores[best]), None, brightness, contrast)
    found = _found(values, position)
    if not found:
        return Observation(None, None, 0, brightness, contrast)
    cls, score = max(found, key=lambda f: f[1])
    return Observation(cls, score, len(found), brightness, contrast)


def _found(values: list[np.ndarray], position: Mapping[str, int]) -> list[tuple[int, float]]:
    """(class, score) of each detection at or above the default threshold."""
    count = int(np.ravel(values[position["count"]])[0])
    classes = np.ravel(values[position["classes"]])[:count]
    scores = np.ravel(values[position["scores"]])[:count]
    threshold = DEFAULT_DETECTION.score_threshold
    return [(int(c), float(s)) for c, s in zip(classes, scores) if s >= threshold]


def _detection_classes(
    runner: ModelRunner, samples: Sequence[Sample], spec: InputSpec, position: Mapping[str, int]
) -> int:
    """Classes seen by a detector over the samples (its output does not say how many)."""
    q_spec = runner.spec(spec)
    top = 0
    for sample in samples:
        values = runner.dequantize(runner.run(to_tensor(sample, q_spec)))
        top = max([top] + [c + 1 for c, _ in _found(values, position)])
    return max(top, 1)
