"""The only module that imports TensorFlow; imported only for Keras and SavedModel inputs.

Loads a Keras ``.keras``/``.h5`` file or a SavedModel folder, pins the batch to 1 and
converts it twice with ``tf.lite.TFLiteConverter``: once as float (the reference the
int8 model is validated against) and once as a full-integer int8 model calibrated on a
representative dataset (int8 weights and activations, int8 or uint8 input/output).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converter.capture import captured_output
from edge_runtime.errors import ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter

import tensorflow as tf  # noqa: E402  (the log level must be set first)

log = logging.getLogger(__name__)

Representative = Callable[[], Iterable[np.ndarray]]


@dataclass(frozen=True)
class Converted:
    float_model: bytes  # float32 reference, same graph, batch 1
    int8_model: bytes  # full-integer model
    input_shape: tuple[int, ...]


def convert(
    path: Path,
    calibrate: Callable[[tuple[int, ...]], Sequence[np.ndarray]],
    *,
    io_type: str = "int8",
) -> Converted:
    """Convert a Keras file or SavedModel folder to float and full-integer TFLite models.

    ``calibrate(shape)`` returns float32 ``(1, H, W, C)`` calibration tensors for the
    model's batch-1 input shape, already preprocessed exactly as the device will.

    Raises:
        ModelError: the model cannot be loaded, has dynamic shapes, or TFLite refuses it.
    """
    with captured_output() as chatter:
        factory, shape = _load(path)
    log.debug("model load output: %s", chatter[0])
    tensors = list(calibrate(shape))
    with captured_output() as chatter:
        float_model = _run(factory(), None, io_type, False)
        int8_model = _run(factory(), lambda: iter(tensors), io_type, False)
    log.debug("converter output: %s", chatter[0])
    return Converted(float_model, int8_model, shape)


def convert_saved_model(
    folder: Path,
    representative: Representative | None,
    *,
    io_type: str = "int8",
    allow_custom_ops: bool = False,
    float_output: bool = False,
) -> bytes:
    """Convert a SavedModel as it is, batch included (used to build the test models).

    ``float_output`` leaves the outputs float, as detection post-processing needs.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
    return _run(converter, representative, io_type, allow_custom_ops, float_output)


def _load(path: Path) -> tuple[Callable[[], Any], tuple[int, ...]]:
    """A factory of fresh TFLiteConverter objects for the model with batch 1, and its shape."""
    path = Path(path)
    if path.is_dir():
        return _load_saved_model(path)
    try:
        model = tf.keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises many unrelated types for a bad file  # noqa: BLE001
        raise ModelError(f"cannot load Keras model {path}: {_first_line(exc)}") from exc
    if len(model.inputs) != 1:
        raise ModelError(f"{path} has {len(model.inputs)} inputs; expected one image input")
    shape = _fixed_shape(tuple(model.inputs[0].shape), path)
    # The same layers behind a batch-1 input: TFLite then sees static shapes throughout.
    inp = tf.keras.Input(shape[1:], batch_size=1, dtype=model.inputs[0].dtype, name="input")
    fixed = tf.keras.Model(inp, model(inp))
    return lambda: tf.lite.TFLiteConverter.from_keras_model(fixed), shape


def _load_saved_model(path: Path) -> tuple[Callable[[], Any], tuple[int, ...]]:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load SavedModel {path}: {_first_line(exc)}") from exc
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelError(f"SavedModel {path} has no 'serving_default' signature")
    sig = signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    if len(specs) != 1:
        raise ModelError(f"SavedModel {path} has {len(specs)} inputs; expected one image input")
    ((name, spec),) = specs.items()
    shape = _fixed_shape(tuple(spec.shape), path)

    # Re-export behind a batch-1 signature so that the converted model is static.
    module = tf.Module()
    module.inner = loaded

    @tf.function(input_signature=[tf.TensorSpec(shape, spec.dtype, name=name)])  # type: ignore[untyped-decorator]
    def serve(x: Any) -> Any:
        return sig(**{name: x})

    module.serve = serve
    folder = tempfile.mkdtemp(prefix="edge-convert-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    tf.saved_model.save(module, folder, signatures={"serving_default": serve})
    return lambda: tf.lite.TFLiteConverter.from_saved_model(folder), shape


def _fixed_shape(shape: tuple[int | None, ...], path: Path) -> tuple[int, ...]:
    if len(shape) != 4:
        raise ModelError(
            f"{path} input has shape {_fmt(shape)}; expected an image batch (N, H, W, C)"
        )
    dynamic = [i for i, d in enumerate(shape[1:], start=1) if d is None or d < 0]
    if dynamic:
        raise ModelError(
            f"{path} input has dynamic dimensions {_fmt(shape)} (axes {dynamic}); "
            "export the model with a fixed height, width and channels"
        )
    return (1,) + tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]


def _run(
    converter: Any,
    representative: Representative | None,
    io_type: str,
    allow_custom_ops: bool,
    float_output: bool = False,
) -> bytes:
    converter.allow_custom_ops = allow_custom_ops
    converter.experimental_enable_resource_variables = False
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([t] for t in representative())
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if allow_custom_ops:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.target_spec.supported_ops = ops
        converter.inference_input_type = tf.int8 if io_type == "int8" else tf.uint8
        if not float_output:
            converter.inference_output_type = tf.int8 if io_type == "int8" else tf.uint8
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises ConverterError, ValueError, ...  # noqa: BLE001
        raise ModelError(f"TFLite conversion failed: {_first_line(exc)}") from exc


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
