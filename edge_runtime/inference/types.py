"""Small immutable value types shared by the inference code, the converter and the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ResizeMode = Literal["stretch", "crop", "letterbox"]
ColorOrder = Literal["RGB", "BGR", "L"]
OutputKind = Literal["classification", "detection", "raw"]

RESIZE_MODES: tuple[str, ...] = ("stretch", "crop", "letterbox")
COLOR_ORDERS: tuple[str, ...] = ("RGB", "BGR", "L")


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``.

    ``scale == 0`` means the tensor is not quantized (float).
    """

    scale: float = 0.0
    zero_point: int = 0

    @property
    def is_quantized(self) -> bool:
        return self.scale != 0.0


@dataclass(frozen=True)
class TensorSpec:
    """What the interpreter says about one tensor."""

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    quantization: Quantization = Quantization()
    dynamic: bool = False  # True when shape_signature holds -1


@dataclass(frozen=True)
class Normalization:
    """``value = (pixel - mean) / std`` on 0..255 pixels. ``None`` means "use the default"."""

    mean: float
    std: float


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the model's input tensor.

    ``normalization`` is ``None`` when nothing (flags, manifest, metadata) said how to
    normalise; the contract's defaults by dtype then apply (see ``preprocess``).
    """

    height: int
    width: int
    channels: int
    dtype: str
    quantization: Quantization = Quantization()
    normalization: Normalization | None = None
    resize: ResizeMode = "stretch"
    color: ColorOrder = "RGB"


@dataclass(frozen=True)
class Classification:
    index: int
    label: str | None
    score: float


@dataclass(frozen=True)
class Detection:
    index: int
    label: str | None
    score: float
    box: tuple[float, float, float, float]  # ymin, xmin, ymax, xmax, normalised 0..1


@dataclass(frozen=True)
class Timings:
    preprocess_ms: float = 0.0
    invoke_ms: float = 0.0
    postprocess_ms: float = 0.0


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str | None
    sha256: str


@dataclass(frozen=True)
class Prediction:
    """The result for one image: classification ``top``, ``detections`` or ``raw`` outputs."""

    model: ModelIdentity
    kind: OutputKind
    top: tuple[Classification, ...] = ()
    detections: tuple[Detection, ...] = ()
    raw: tuple[tuple[str, tuple[int, ...], tuple[float, ...]], ...] = ()
    timings: Timings = field(default_factory=Timings)
