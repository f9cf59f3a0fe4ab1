"""Full-integer quantization of a float ``.tflite`` without TensorFlow.

``ai-edge-quantizer`` with its static int8 recipe (int8 weights, int8 activations,
min/max calibration) gives a model whose input and output tensors are int8 already.
For ``--input-type uint8`` the graph is then wrapped here with two TFLite ``QUANTIZE``
ops (uint8 -> int8 at the input, int8 -> uint8 at the output; same scale, zero point
shifted by 128, which is exact), as TensorFlow's converter does. This module is the
only one that touches the quantizer and its flatbuffer object API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from converter.capture import captured_output
from edge_runtime.errors import ModelError

log = logging.getLogger(__name__)

_INT8, _UINT8, _FLOAT32 = 9, 3, 0  # tflite TensorType
_QUANTIZE = 114  # BuiltinOperator.QUANTIZE


def quantize_float_tflite(
    model: bytes, calibration: Sequence[np.ndarray], *, io_type: str = "int8", num_threads: int = 2
) -> bytes:
    """Quantize ``model`` (float32) to int8 with ``calibration`` float input tensors.

    Raises:
        ModelError: the model is not float, the quantizer refuses it, or the result is
            not full-integer at its input and output.
    """
    from ai_edge_quantizer import quantizer, recipe

    try:
        with captured_output() as chatter:
            q = quantizer.Quantizer(bytearray(model), recipe.static_wi8_ai8())
            signature, input_name = _signature_input(model)
            data: dict[str, Iterable[dict[str, np.ndarray]]] = {
                signature: [{input_name: t.astype(np.float32)} for t in calibration]
            }
            result = q.quantize(_min_max(model, data, num_threads), enable_progress_report=False)
            quantized = bytes(result.quantized_model)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(
            f"ai-edge-quantizer could not quantize the model: {_first_line(exc)}"
        ) from exc
    log.debug("quantizer output: %s", chatter[0] if chatter else "")
    _check_integer_io(quantized)
    return to_uint8_io(quantized) if io_type == "uint8" else quantized


def _min_max(model: bytes, data: dict[str, Any], threads: int) -> Any:
    """Calibration ranges that are the true minimum and maximum over the samples.

    The quantizer's own ``calibrate`` keeps a moving average of each sample's range
    (smoothing 0.95), which forgets the extremes: EfficientNet-Lite0's logits reached 11 on
    cat photos in its calibration set but were given a range up to 7.5, so every cat
    class saturated at the top value and top-1 agreed with the float model on 61% of 320
    real crops (91% with min/max). Its calibrator is run here with min/max merging, as
    TensorFlow's converter calibrates.
    """
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    calib = calibrator.Calibrator(
        bytearray(model), num_threads=threads, qsv_update_func=qsv_utils.min_max_update
    )
    calib.calibrate(data, manager)
    return calib.get_model_qsvs()


def float_input_shape(model: bytes) -> tuple[int, ...]:
    """The batch-1 input shape of a float ``.tflite`` with one image input.

    Raises:
        ModelError: not float, not one 4-D input, or dynamic non-batch dimensions.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fb

    try:
        m = fb.convert_bytearray_to_object(bytearray(model))
    except Exception as exc:  # the flatbuffer reader raises many types  # noqa: BLE001
        raise ModelError(f"cannot read the .tflite: {_first_line(exc)}") from exc
    sg = m.subgraphs[0]
    if len(sg.inputs) != 1:
        raise ModelError(f"the model has {len(sg.inputs)} inputs; expected one image input")
    t = sg.tensors[sg.inputs[0]]
    if t.type != _FLOAT32:
        raise ModelError(
            "the .tflite input is not float32: the model is already quantized; give the float model"
        )
    shape = [int(d) for d in t.shape]
    signature = [int(d) for d in (t.shapeSignature if t.shapeSignature is not None else shape)]
    if len(shape) != 4:
        raise ModelError(f"the model input has shape {shape}; expected an image batch (N, H, W, C)")
    dynamic = [i for i, d in enumerate(signature) if i > 0 and d < 0]
    if dynamic:
        shown = ["?" if d < 0 else str(d) for d in signature]
        raise ModelError(
            f"the model input has dynamic dimensions ({', '.join(shown)}) (axes {dynamic}); "
            "export the model with a fixed height, width and channels"
        )
    return (1, shape[1], shape[2], shape[3])


def _signature_input(model: bytes) -> tuple:  # type: ignore[type-arg]
    from ai_edge_quantizer.utils import tfl_interpreter_utils

    interp = tfl_interpreter_utils.create_tfl_interpreter(bytearray(model))
    signatures = interp.get_signature_list()
    if not signatures:
        raise ModelError(
            "the float .tflite has no signature; re-export it with a serving signature"
        )
    key = next(iter(signatures))
    inputs = signatures[key]["inputs"]
    if len(inputs) != 1:
        raise ModelError(f"the float .tflite has {len(inputs)} inputs; expected one image input")
    return key, inputs[0]


def _check_integer_io(model: bytes) -> None:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    m = fb.convert_bytearray_to_object(bytearray(model))
    sg = m.subgraphs[0]
    for kind, indices in (("input", sg.inputs), ("output", sg.outputs)):
        for i in indices:
            t = sg.tensors[i]
            if t.type not in (_INT8, _UINT8):
                raise ModelError(
                    f"the quantizer left {kind} tensor {t.name.decode(errors='replace')} as "
                    f"type {t.type} instead of int8; the model has ops it cannot quantize"
                )


def to_uint8_io(model: bytes) -> bytes:
    """Give an int8-input/output model uint8 input and output through QUANTIZE ops."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    m = fb.convert_bytearray_to_object(bytearray(model))
    sg = m.subgraphs[0]
    opcode = _quantize_opcode(m, fb)
    new_inputs = [_wrap(sg, i, fb, opcode, at_input=True) for i in sg.inputs]
    new_outputs = [_wrap(sg, i, fb, opcode, at_input=False) for i in sg.outputs]
    remap = dict(zip(list(sg.inputs) + list(sg.outputs), new_inputs + new_outputs))
    sg.inputs, sg.outputs = new_inputs, new_outputs
    for sig in m.signatureDefs or []:
        for entry in list(sig.inputs or []) + list(sig.outputs or []):
            entry.tensorIndex = remap.get(entry.tensorIndex, entry.tensorIndex)
    return bytes(fb.convert_object_to_bytearray(m))


def _quantize_opcode(m: Any, fb: Any) -> int:
    for index, code in enumerate(m.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == _QUANTIZE:
            return index
    code = fb.OperatorCodeT()
    code.builtinCode = _QUANTIZE
    code.deprecatedBuiltinCode = _QUANTIZE
    code.version = 1
    m.operatorCodes.append(code)
    return len(m.operatorCodes) - 1


def _wrap(sg: Any, index: int, fb: Any, opcode: int, *, at_input: bool) -> int:
    """Add a uint8 twin of tensor ``index`` and a QUANTIZE op between them; returns the
    twin's index. The twin takes the original's name so the signature stays readable."""
    t = sg.tensors[index]
    if t.type != _INT8:
        return index
    twin = fb.TensorT()
    twin.name = t.name
    t.name = t.name + b"_int8"
    twin.shape = np.array(t.shape, dtype=np.int32)
    twin.shapeSignature = t.shapeSignature
    twin.type = _UINT8
    twin.buffer = 0  # by convention the empty buffer that non-constant tensors use
    q = fb.QuantizationParametersT()
    q.scale = [float(s) for s in t.quantization.scale]
    q.zeroPoint = [int(z) + 128 for z in t.quantization.zeroPoint]
    twin.quantization = q
    sg.tensors.append(twin)
    twin_index = len(sg.tensors) - 1
    op = fb.OperatorT()
    op.opcodeIndex = opcode
    if at_input:
        op.inputs, op.outputs = [twin_index], [index]
        sg.operators.insert(0, op)
    else:
        op.inputs, op.outputs = [index], [twin_index]
        sg.operators.append(op)
    return twin_index


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__: list[str] = ["float_input_shape", "quantize_float_tflite", "to_uint8_io"]
