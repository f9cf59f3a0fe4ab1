"""Small immutable value types shared by the inference code, the converter and the daemon."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Union

ResizeMode = Literal["stretch", "crop", "letterbox"]
ColorOrder = Literal["RGB", "BGR", "L"]
OutputKind = Literal["classification", "detection", "raw"]

RESIZE_MODES: tuple[str, ...] = ("stretch", "crop", "letterbox")
COLOR_ORDERS: tuple[str, ...] = ("RGB", "BGR", "L")
#: Detection layouts: the TFLite post-processing op's four outputs (``ssd``), YOLO heads
#: ``[1, N, 5 + classes]`` (``yolov5``) and ``[1, 4 + classes, N]`` (``yolov8``, also
#: YOLO11), and end-to-end exports with NMS built in, ``[1, K, 6]`` rows of
#: ``x1, y1, x2, y2, score, class`` (``yolo-end2end``).
DETECTION_FORMATS: tuple[str, ...] = ("ssd", "yolov5", "yolov8", "yolo-end2end")
#: YOLO box coordinates: 0..1 of the model input, or its pixels.
BOX_UNITS: tuple[str, ...] = ("normalized", "pixels")


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


#: One value for every channel, or one per channel.
ChannelValues = Union[float, tuple[float, ...]]


@dataclass(frozen=True)
class Normalization:
    """``value = (pixel - mean) / std`` on 0..255 pixels, ``mean`` and ``std`` each one
    value for every channel or a tuple of one per channel (``normalization`` builds it so
    that equal values collapse to one). ``None`` in an ``InputSpec`` means "use the default"."""

    mean: ChannelValues
    std: ChannelValues

    @property
    def per_channel(self) -> bool:
        return isinstance(self.mean, tuple) or isinstance(self.std, tuple)

    def values(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The mean and the std of each of ``channels`` channels.

        Raises:
            ValueError: per-channel values for another number of channels.
        """
        return _spread(self.mean, channels, "mean"), _spread(self.std, channels, "std")


def channel_values(value: float | Sequence[float]) -> ChannelValues:
    """One number, or per-channel numbers as a tuple; equal ones collapse to one number."""
    if isinstance(value, (int, float)):
        return float(value)
    numbers = tuple(float(v) for v in value)
    if len(numbers) == 1 or (numbers and len(set(numbers)) == 1):
        return numbers[0]
    return numbers


def normalization(mean: float | Sequence[float], std: float | Sequence[float]) -> Normalization:
    """A ``Normalization`` from one value or per-channel values of each."""
    return Normalization(channel_values(mean), channel_values(std))


def channel_json(value: ChannelValues) -> float | list[float]:
    """A mean or std as a manifest writes it: a number, or a list of one per channel."""
    return list(value) if isinstance(value, tuple) else value


def _spread(value: ChannelValues, channels: int, what: str) -> tuple[float, ...]:
    if not isinstance(value, tuple):
        return (value,) * channels
    if len(value) != channels:
        raise ValueError(
            f"{len(value)} {what} values for an input of {channels} channel"
            f"{'' if channels == 1 else 's'}; give one value or {channels}"
        )
    return value


@dataclass(frozen=True)
class DetectionSettings:
    """What counts as a detection: ``score_threshold`` (detections scoring below it are
    left out), ``iou_threshold`` (a box overlapping a better one of its class by more is
    suppressed; YOLO layouts only, SSD's op suppresses itself) and ``max_detections``."""

    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100


DEFAULT_DETECTION = DetectionSettings()


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
