"""The inference engine: one model, one interpreter, images in, predictions out.

``prepare`` (decode, resize, quantize) touches no interpreter and may run on any
thread, so the daemon overlaps it with ``infer`` of the previous request; ``infer``
serialises access to the interpreter with a lock, and the interpreter releases the GIL
while it computes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import InputError, ModelError
from edge_runtime.inference import backend as backends
from edge_runtime.inference import delegate as delegates
from edge_runtime.inference.labels import Labels, check_labels
from edge_runtime.inference.outputs import OutputLayout, resolve_layout
from edge_runtime.inference.postprocess import dequantize, detections, top_k, yolo_detections
from edge_runtime.inference.preprocess import DEFAULT_MAX_PIXELS, Placement, preprocess
from edge_runtime.inference.source import ModelSource, load_source
from edge_runtime.inference.types import (
    COLOR_ORDERS,
    DEFAULT_DETECTION,
    RESIZE_MODES,
    ChannelValues,
    Detection,
    DetectionSettings,
    InputSpec,
    ModelIdentity,
    Normalization,
    Prediction,
    Quantization,
    TensorSpec,
    Timings,
    normalization,
)
from edge_runtime.inference.yolo import YoloHead, decode

DEFAULT_TOP_K = 5
DEFAULT_SCORE_THRESHOLD = DEFAULT_DETECTION.score_threshold


@dataclass(frozen=True)
class InputOverrides:
    """Command-line preprocessing flags; they win over the manifest and metadata.
    A ``mean`` without a ``std`` uses ``std = 1``, a ``std`` alone uses ``mean = 0``;
    each is one value or a tuple of one per channel."""

    mean: ChannelValues | None = None
    std: ChannelValues | None = None
    resize: str | None = None


@dataclass(frozen=True)
class Prepared:
    """An input tensor ready for ``infer``, and how it was made."""

    tensor: np.ndarray
    placement: Placement
    spec: InputSpec
    preprocess_ms: float


def tensor_spec(detail: Mapping[str, Any]) -> TensorSpec:
    """The interpreter's tensor details as a value type."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    signature = detail.get("shape_signature")
    return TensorSpec(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        quantization=Quantization(float(scale), int(zero_point)),
        dynamic=signature is not None and any(int(d) < 0 for d in signature),
    )


class Engine:
    """A loaded model. Build with ``Engine.load``."""

    def __init__(
        self,
        *,
        source: ModelSource,
        interpreter: Any,
        delegate: str,
        backend: str,
        input_spec: InputSpec | None,
        inputs: tuple[TensorSpec, ...],
        layout: OutputLayout,
        labels: Labels | None,
        detection: DetectionSettings = DEFAULT_DETECTION,
    ) -> None:
        self.source = source
        self.identity: ModelIdentity = source.identity
        self.delegate = delegate
        self.backend = backend
        self._input_spec = input_spec
        self.inputs = inputs
        self.layout = layout
        self.labels = labels
        self.detection = detection
        self._interpreter = interpreter
        self._lock = threading.Lock()

    # -- construction ------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: Path,
        *,
        delegate: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        labels: Path | None = None,
        overrides: InputOverrides = InputOverrides(),
        backend: str | None = None,
        delegate_loader: delegates.Loader | None = None,
        before_native: Callable[[], object] | None = None,
        detection: DetectionSettings = DEFAULT_DETECTION,
    ) -> Engine:
        """Load a ``.tflite`` or a bundle and make its interpreter (``before_native``: see
        ``backend.make_interpreter``).

        Raises:
            ModelError, BundleError, LabelsError, DelegateError, BackendError, ConfigError.
        """
        source = load_source(Path(path), labels_path=labels)
        return cls.from_source(
            source,
            delegate=delegate,
            device=device,
            threads=threads,
            overrides=overrides,
            backend=backend,
            delegate_loader=delegate_loader,
            before_native=before_native,
            detection=detection,
        )

    @classmethod
    def from_source(
        cls,
        source: ModelSource,
        *,
        delegate: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        overrides: InputOverrides = InputOverrides(),
        backend: str | None = None,
        delegate_loader: delegates.Loader | None = None,
        before_native: Callable[[], object] | None = None,
        detection: DetectionSettings = DEFAULT_DETECTION,
    ) -> Engine:
        if threads is not None and not 1 <= threads <= 64:
            raise ModelError(f"threads must be between 1 and 64, got {threads}")
        lib = backends.get_backend(backend)
        choice = delegates.choose(
            delegate,
            model_is_edgetpu=source.model_file.is_edgetpu,
            cpu_model_available=source.cpu_content is not None,
            device=device,
            loader=delegate_loader
            or (lambda name, opts: backends.load_delegate(name, opts, backend=lib)),
        )
        content = source.content
        if choice.name == "cpu" and source.model_file.is_edgetpu and source.cpu_content is not None:
            content = source.cpu_content
        interpreter = backends.make_interpreter(
            content,
            num_threads=threads,
            delegates=choice.delegates,
            backend=lib,
            before_native=before_native,
        )
        inputs = tuple(tensor_spec(d) for d in interpreter.get_input_details())
        outputs = tuple(tensor_spec(d) for d in interpreter.get_output_details())
        manifest = source.manifest or {}
        layout = resolve_layout(
            outputs,
            manifest_outputs=manifest.get("outputs"),
            detection_op_outputs=source.model_file.detection_outputs,
            input_shape=inputs[0].shape if len(inputs) == 1 else None,
        )
        if layout.kind == "classification" and source.labels is not None:
            classes = int(np.prod(layout.tensors[0].shape))
            check_labels(source.labels, classes, source.labels_source or "labels")
        input_spec = _input_spec(inputs, source, manifest.get("input"), overrides)
        return cls(
            source=source,
            interpreter=interpreter,
            delegate=choice.name,
            backend=lib.name,
            input_spec=input_spec,
            inputs=inputs,
            layout=layout,
            labels=source.labels,
            detection=detection,
        )

    # -- running -----------------------------------------------------------------
    @property
    def input_spec(self) -> InputSpec:
        if self._input_spec is None:
            shapes = ", ".join(str(list(t.shape)) for t in self.inputs)
            raise InputError(
                f"this model's input {shapes} is not a single image tensor [1, H, W, 1 or 3]"
            )
        return self._input_spec

    def prepare(self, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
        """Decode and preprocess image bytes; safe to call from any thread.

        Raises:
            InputError: not a usable image.
        """
        spec = self.input_spec
        start = time.perf_counter()
        tensor, placement = preprocess(data, spec, max_pixels=max_pixels)
        return Prepared(tensor, placement, spec, (time.perf_counter() - start) * 1000)

    def prepare_tensor(self, data: bytes) -> Prepared:
        """The model's image input given as the tensor itself: raw bytes in the input's
        dtype and shape (batch of 1), taken as they are.

        Raises:
            InputError: not this input's size.
        """
        spec = self.input_spec
        shape = (1, spec.height, spec.width, spec.channels)
        dtype = np.dtype(spec.dtype)
        want = int(np.prod(shape)) * dtype.itemsize
        if len(data) != want:
            raise InputError(
                f"the input tensor is {dtype.name}{list(shape)}: {want} bytes, got {len(data)}"
            )
        tensor = np.frombuffer(data, dtype=dtype).reshape(shape)
        return Prepared(tensor, Placement(), spec, 0.0)

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Invoke on raw input tensors (one per model input); returns copies of the outputs.

        Raises:
            InputError: a tensor of the wrong shape or dtype.
        """
        if len(tensors) != len(self.inputs):
            raise InputError(f"model takes {len(self.inputs)} inputs, got {len(tensors)}")
        for spec, tensor in zip(self.inputs, tensors):
            if tuple(tensor.shape) != spec.shape or tensor.dtype.name != spec.dtype:
                raise InputError(
                    f"input {spec.name!r} expects {spec.dtype}{list(spec.shape)}, "
                    f"got {tensor.dtype.name}{list(tensor.shape)}"
                )
        with self._lock:
            if self._interpreter is None:
                raise ModelError("the engine is closed")
            for spec, tensor in zip(self.inputs, tensors):
                self._interpreter.set_tensor(spec.index, tensor)
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(t.index) for t in self.layout.tensors]

    def warm_up(self) -> float:
        """One invoke on zero inputs, so that no request pays for the interpreter's first
        run (buffers, caches); returns its milliseconds.

        Raises:
            ModelError: the interpreter cannot run the model, or the engine is closed.
        """
        start = time.perf_counter()
        zeros = [np.zeros(spec.shape, dtype=spec.dtype) for spec in self.inputs]
        try:
            self.run(zeros)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"the model fails on its first run: {exc}") from exc
        return (time.perf_counter() - start) * 1000

    def infer(
        self,
        prepared: Prepared,
        *,
        top_k: int = DEFAULT_TOP_K,
        threshold: float | None = None,
        detection: DetectionSettings | None = None,
    ) -> Prediction:
        """Invoke on a prepared input and post-process the outputs. Detections follow
        ``detection`` (else the engine's settings); ``threshold``, when given, replaces
        their score threshold."""
        if prepared.spec != self._input_spec:
            raise InputError("the input was prepared for another model; prepare it again")
        start = time.perf_counter()
        raw = self.run([prepared.tensor])
        invoked = time.perf_counter()
        settings = detection or self.detection
        if threshold is not None:
            settings = replace(settings, score_threshold=threshold)
        prediction = self._postprocess(raw, prepared.placement, top_k, settings)
        done = time.perf_counter()
        timings = Timings(prepared.preprocess_ms, (invoked - start) * 1000, (done - invoked) * 1000)
        return Prediction(
            model=self.identity,
            kind=self.layout.kind,
            top=prediction[0],
            detections=prediction[1],
            raw=prediction[2],
            timings=timings,
        )

    def predict(
        self,
        data: bytes,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        top_k: int = DEFAULT_TOP_K,
        threshold: float | None = None,
        detection: DetectionSettings | None = None,
    ) -> Prediction:
        return self.infer(
            self.prepare(data, max_pixels=max_pixels),
            top_k=top_k,
            threshold=threshold,
            detection=detection,
        )

    def close(self) -> None:
        with self._lock:
            self._interpreter = None

    def _postprocess(
        self, raw: list[np.ndarray], placement: Placement, k: int, settings: DetectionSettings
    ) -> tuple[tuple, tuple, tuple]:  # type: ignore[type-arg]
        layout = self.layout
        if layout.kind == "detection" and layout.format not in (None, "ssd"):
            return (), self._yolo(raw[0], placement, settings), ()
        values = [dequantize(a, t.quantization) for a, t in zip(raw, layout.tensors)]
        if layout.kind == "classification":
            return top_k(values[0], k, self.labels), (), ()
        if layout.kind == "detection":
            part = {role: values[pos] for role, pos in layout.roles.items()}
            found = detections(
                part["boxes"],
                part["classes"],
                part["scores"],
                part["count"],
                labels=self.labels,
                threshold=settings.score_threshold,
                placement=placement,
                max_detections=settings.max_detections,
            )
            return (), found, ()
        raw_out = tuple(
            (t.name, tuple(v.shape), tuple(float(x) for x in v.reshape(-1)))
            for t, v in zip(layout.tensors, values)
        )
        return (), (), raw_out

    def _yolo(
        self, raw: np.ndarray, placement: Placement, settings: DetectionSettings
    ) -> tuple[Detection, ...]:
        spec = self.input_spec
        head = YoloHead(str(self.layout.format), self.layout.box_units, spec.height, spec.width)
        decoded = decode(raw, self.layout.tensors[0].quantization, head, settings)
        return yolo_detections(decoded, labels=self.labels, placement=placement)


def _input_spec(
    inputs: tuple[TensorSpec, ...],
    source: ModelSource,
    manifest_input: Mapping[str, Any] | None,
    overrides: InputOverrides,
) -> InputSpec | None:
    """The image input spec, or ``None`` when the model's input is not an image."""
    if len(inputs) != 1:
        return None
    tensor = inputs[0]
    shape = tensor.shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        return None
    manifest_input = manifest_input or {}
    resize = overrides.resize or manifest_input.get("resize") or "stretch"
    if resize not in RESIZE_MODES:
        raise ModelError(f"resize mode {resize!r} is not one of {', '.join(RESIZE_MODES)}")
    color = manifest_input.get("color") or ("L" if shape[3] == 1 else "RGB")
    if color not in COLOR_ORDERS:
        raise ModelError(f"colour order {color!r} is not one of {', '.join(COLOR_ORDERS)}")
    norm = _normalization(source, manifest_input, overrides)
    if norm is not None:
        try:
            norm.values(shape[3])
        except ValueError as exc:
            raise ModelError(f"normalisation: {exc}") from exc
    return InputSpec(
        height=shape[1],
        width=shape[2],
        channels=shape[3],
        dtype=tensor.dtype,
        quantization=tensor.quantization,
        normalization=norm,
        resize=resize,  # type: ignore[arg-type]
        color=color,  # type: ignore[arg-type]
    )


def _normalization(
    source: ModelSource, manifest_input: Mapping[str, Any], overrides: InputOverrides
) -> Normalization | None:
    if overrides.mean is not None or overrides.std is not None:
        mean = 0.0 if overrides.mean is None else overrides.mean
        return _checked(mean, 1.0 if overrides.std is None else overrides.std)
    if manifest_input.get("mean") is not None and manifest_input.get("std") is not None:
        return _checked(manifest_input["mean"], manifest_input["std"])
    meta = source.model_file.metadata
    if meta.mean and meta.std:
        return _checked(meta.mean, meta.std)  # per channel; equal values collapse to one
    return None


def _checked(mean: Any, std: Any) -> Normalization:
    """The normalisation from one value or per-channel values of each.

    Raises:
        ModelError: a value that is not finite, a zero std.
    """
    means = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    stds = np.atleast_1d(np.asarray(std, dtype=np.float64))
    if not np.isfinite(means).all() or not np.isfinite(stds).all() or (stds == 0).any():
        raise ModelError(
            f"normalisation needs a finite mean and a non-zero std, got mean={mean}, std={std}"
        )
    return normalization(means.tolist(), stds.tolist())
