"""Calibration and validation images through the runtime's own preprocessing.

There is one preprocessing implementation, ``edge_runtime.inference.preprocess``; the
converter calls it with a float32 ``InputSpec`` carrying the user's mean/std, resize
mode and colour order, so calibration sees exactly what the device will feed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from edge_runtime.errors import ConfigError, InputError
from edge_runtime.inference.preprocess import image_to_tensor, preprocess, resize
from edge_runtime.inference.types import ChannelValues, InputSpec, normalization

log = logging.getLogger(__name__)

#: File suffixes taken as images; anything else in a calibration folder is skipped.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"})


@dataclass(frozen=True)
class ImageSet:
    """Image files and, for class subfolders, each file's class name."""

    paths: tuple[Path, ...]
    classes: tuple[str | None, ...]


def float_spec(
    shape: Sequence[int],
    mean: ChannelValues,
    std: ChannelValues,
    resize_mode: str = "stretch",
    color: str | None = None,
) -> InputSpec:
    """The float32 input spec of a ``(1, H, W, C)`` model with the given normalisation
    (each one value or one per channel).

    Raises:
        ConfigError: per-channel values for another number of channels.
    """
    _, height, width, channels = (int(d) for d in shape)
    norm = normalization(
        mean if isinstance(mean, tuple) else float(mean),
        std if isinstance(std, tuple) else float(std),
    )
    try:
        norm.values(channels)
    except ValueError as exc:
        raise ConfigError(f"--mean/--std: {exc}") from exc
    return InputSpec(
        height=height,
        width=width,
        channels=channels,
        dtype="float32",
        normalization=norm,
        resize=resize_mode,  # type: ignore[arg-type]
        color=(color or ("L" if channels == 1 else "RGB")),  # type: ignore[arg-type]
    )


def list_images(folder: Path, *, what: str = "calibration") -> ImageSet:
    """Image files in ``folder`` and its class subfolders, sorted for reproducibility.

    Raises:
        ConfigError: the folder is missing, empty, or holds no image files.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ConfigError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise ConfigError(f"{what} path {folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(
            f"{what} folder {folder} is empty; put sample images (JPEG, PNG, ...) in it"
        )
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = len(files) - len(images)
    if not images:
        raise ConfigError(
            f"{what} folder {folder} holds {len(files)} files but no images "
            f"(expected {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    if skipped:
        log.warning("skipping %d non-image files in %s", skipped, folder)
    classes = tuple(p.parent.name if p.parent != folder else None for p in images)
    return ImageSet(tuple(images), classes)


def calibration_tensors(
    images: ImageSet, spec: InputSpec, *, max_samples: int, progress: TextIO | None = None
) -> tuple[list[np.ndarray], list[Path]]:
    """Preprocess up to ``max_samples`` images (spread evenly over the set) to float
    tensors; returns them and the files they came from. Undecodable files are skipped
    with a warning.

    Raises:
        InputError: not a single file could be decoded.
    """
    chosen = _spread(list(images.paths), max_samples)
    tensors: list[np.ndarray] = []
    used: list[Path] = []
    failed: list[tuple[Path, Exception]] = []
    bar = ProgressBar("calibration", len(chosen), progress)
    for path in chosen:
        try:
            tensor, _ = preprocess(path.read_bytes(), spec)
        except (InputError, OSError) as exc:
            failed.append((path, exc))
        else:
            tensors.append(tensor.astype(np.float32))
            used.append(path)
        bar.step()
    bar.done()
    if not tensors:
        first, reason = failed[0]
        raise InputError(
            f"none of the {len(chosen)} calibration images could be decoded "
            f"({first.name}: {reason})"
        )
    for skipped, reason in failed:
        log.warning("skipping %s: %s", skipped, reason)
    return tensors, used


def array_to_tensor(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A uint8 image array (H, W) or (H, W, C) to the model's input tensor, through the
    same resize and lookup-table code the device uses for decoded images."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise InputError(f"validation images must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(arr)
    img = img.convert("L" if spec.channels == 1 else "RGB")
    img, _ = resize(img, spec.width, spec.height, spec.resize)
    return image_to_tensor(img, spec)


def file_to_tensor(path: Path, spec: InputSpec) -> np.ndarray:
    tensor, _ = preprocess(Path(path).read_bytes(), spec)
    return tensor


def with_quantization(spec: InputSpec, dtype: str, scale: float, zero_point: int) -> InputSpec:
    """The same preprocessing for a quantized input tensor (what the device runs)."""
    from edge_runtime.inference.types import Quantization

    return replace(spec, dtype=dtype, quantization=Quantization(float(scale), int(zero_point)))


def _spread(items: list[Path], limit: int) -> list[Path]:
    if limit <= 0 or len(items) <= limit:
        return items
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


class ProgressBar:
    """A one-line text progress bar on stderr (only when it is a terminal or asked for)."""

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label, self.total, self.width = label, max(total, 1), width
        self.stream = (
            stream if stream is not None else (sys.stderr if sys.stderr.isatty() else None)
        )
        self.count = 0
        self._last = 0.0

    def step(self) -> None:
        self.count += 1
        now = time.monotonic()
        if self.stream is not None and (now - self._last > 0.1 or self.count == self.total):
            self._last = now
            filled = self.width * self.count // self.total
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.count}/{self.total}")
            self.stream.flush()

    def done(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
