"""Float vs int8 on a validation set: accuracy, agreement, per-output error.

Pure metric functions over arrays, plus the loader for the two validation forms
(a folder with one subfolder per class named as in the labels, or an ``.npz`` with
``x``: uint8 images ``(N, H, W[, C])`` and ``y``: class indices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from converter.calibration import ProgressBar, array_to_tensor, file_to_tensor, list_images
from converter.runner import ModelRunner
from edge_runtime.errors import ConfigError, InputError
from edge_runtime.inference.types import InputSpec

Sample = Union[np.ndarray, Path]


@dataclass(frozen=True)
class ValidationSet:
    samples: tuple[Sample, ...]
    labels: tuple[int, ...] | None  # class index per sample, when known
    source: str


def load_validation(path: Path, labels: Sequence[str] | None) -> ValidationSet:
    """Read ``path`` (class folders or ``.npz``).

    Raises:
        ConfigError: missing path, unreadable npz, class folders not in the labels.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"validation set {path} does not exist")
    if path.is_file():
        return _from_npz(path)
    images = list_images(path, what="validation")
    if any(c is None for c in images.classes):
        raise ConfigError(
            f"validation folder {path} must hold one subfolder per class, named as in the labels"
        )
    if not labels:
        raise ConfigError(
            "a validation folder needs --labels to map its class subfolders to outputs"
        )
    index = {name: i for i, name in enumerate(labels)}
    classes = [str(c) for c in images.classes]
    unknown = sorted({c for c in classes if c not in index})
    if unknown:
        raise ConfigError(f"validation subfolders {', '.join(unknown)} are not in the labels file")
    return ValidationSet(images.paths, tuple(index[c] for c in classes), str(path))


def _from_npz(path: Path) -> ValidationSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data.get("y")
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"validation file {path} is not an .npz with arrays x and y: {exc}"
        ) from exc
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ConfigError(
            f"validation x must be uint8 images (N, H, W[, C]); got {x.dtype} {x.shape}"
        )
    if y is not None and len(y) != len(x):
        raise ConfigError(f"validation x has {len(x)} images but y has {len(y)} labels")
    return ValidationSet(tuple(x), None if y is None else tuple(int(v) for v in y), str(path))


def to_tensor(sample: Sample, spec: InputSpec) -> np.ndarray:
    if isinstance(sample, Path):
        return file_to_tensor(sample, spec)
    return array_to_tensor(sample, spec)


def evaluate(
    float_runner: ModelRunner,
    int8_runner: ModelRunner,
    dataset: ValidationSet,
    base_spec: InputSpec,
    *,
    classification: bool,
    progress: Any = None,
) -> dict[str, Any]:
    """Run both models over the set and compare (see ``compare``)."""
    float_spec, int8_spec = float_runner.spec(base_spec), int8_runner.spec(base_spec)
    float_out: list[list[np.ndarray]] = []
    int8_out: list[list[np.ndarray]] = []
    bar = ProgressBar("validation", len(dataset.samples), progress)
    for sample in dataset.samples:
        try:
            f_in, q_in = to_tensor(sample, float_spec), to_tensor(sample, int8_spec)
        except (InputError, OSError) as exc:
            raise InputError(
                f"validation sample {sample if isinstance(sample, Path) else ''} unusable: {exc}"
            ) from exc
        float_out.append(float_runner.dequantize(float_runner.run(f_in)))
        int8_out.append(int8_runner.dequantize(int8_runner.run(q_in)))
        bar.step()
    bar.done()
    names = [o.name for o in int8_runner.outputs]
    return compare(
        float_out, int8_out, names, dataset.labels if classification else None, classification
    )


def compare(
    float_out: Sequence[Sequence[np.ndarray]],
    int8_out: Sequence[Sequence[np.ndarray]],
    names: Sequence[str],
    labels: Sequence[int] | None,
    classification: bool,
) -> dict[str, Any]:
    """Accuracy (when labels are known), top-1 agreement, and per-output error.

    ``*_out[i][k]`` is output ``k`` for sample ``i``, dequantised.
    """
    metrics: dict[str, Any] = {"samples": len(float_out)}
    if classification:
        f_top = np.array([int(np.argmax(o[0])) for o in float_out])
        q_top = np.array([int(np.argmax(o[0])) for o in int8_out])
        metrics["top1_agreement"] = _r(float(np.mean(f_top == q_top)))
        if labels is not None:
            y = np.asarray(labels)
            metrics["float_top1"] = _r(float(np.mean(f_top == y)))
            metrics["int8_top1"] = _r(float(np.mean(q_top == y)))
            metrics["accuracy_drop"] = _r(metrics["float_top1"] - metrics["int8_top1"])
    per_output = []
    for k, name in enumerate(names):
        f = np.concatenate([np.ravel(o[k]) for o in float_out])
        q = np.concatenate([np.ravel(o[k]) for o in int8_out])
        per_output.append(
            {
                "name": name,
                "max_abs_error": _r(float(np.max(np.abs(f - q)))),
                "snr_db": snr_db(f, q),
            }
        )
    metrics["outputs"] = per_output
    return metrics


def snr_db(reference: np.ndarray, approx: np.ndarray) -> float | None:
    """Signal-to-noise ratio of ``approx`` against ``reference`` in dB (``None`` when
    the two are identical, i.e. infinite)."""
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(reference - approx, dtype=np.float64)))
    if noise == 0.0:
        return None
    if signal == 0.0:
        return _r(-10 * math.log10(noise))  # all-zero reference: noise power alone
    return _r(10 * math.log10(signal / noise))


def _r(value: float) -> float:
    return round(float(value), 6)
