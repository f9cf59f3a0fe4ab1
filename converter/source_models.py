"""ONNX and PyTorch models as a float ``.tflite`` plus the source model as float reference.

The heavy libraries load only here, only for these formats: ``onnx_source`` (onnx,
onnxruntime) for ``.onnx``, ``torch_source`` (torch, litert-torch) for ``.onnx``, ``.pt2``
and ``--torch MODULE:FACTORY``. The float ``.tflite`` then goes through the same
quantization (ai-edge-quantizer), validation, bundling and signing as any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from converter.capture import captured_output
from edge_runtime.errors import ConfigError
from edge_runtime.inference.types import InputSpec

SOURCE_FORMATS = ("onnx", "pt2", "torch")


class Reference(Protocol):
    def run(self, tensor: np.ndarray) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class SourceModel:
    float_model: bytes  # float .tflite, NHWC input
    reference: Reference  # the source model itself (NHWC float input in)
    nchw_shape: tuple[int, int, int, int]
    runtime: str  # what runs the reference: "onnxruntime" or "pytorch"
    #: an ONNX export's NMS or end-to-end head the graph was cut before
    #: (``onnx_nms.ExportedNms.to_report``)
    end_to_end: dict[str, Any] | None = field(default=None, hash=False)


class SourceRunner:
    """The float reference with the interface ``validation.evaluate`` takes from a
    ``ModelRunner``: float input as the spec says, real-valued outputs."""

    def __init__(self, reference: Reference) -> None:
        self._reference = reference

    def spec(self, float_spec: InputSpec) -> InputSpec:
        return float_spec

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        return self._reference.run(tensor)

    def dequantize(self, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o, dtype=np.float64) for o in outputs]


def load(
    fmt: str, model: Path | None, torch_factory: str | None, input_shape: Sequence[int] | None
) -> SourceModel:
    """Read the source model and convert it to a float ``.tflite``.

    Raises:
        ConfigError: a missing extra, a bad ``--torch`` or ``--input-shape``.
        ModelError: a model that cannot be read, run or converted (one line, naming why).
    """
    with captured_output():  # the libraries' import-time notices
        from converter import torch_source
    end_to_end: dict[str, Any] | None = None
    if fmt == "onnx":
        assert model is not None
        with captured_output():
            from converter import onnx_nms, onnx_source
        graph, data = onnx_source.load(model, input_shape)
        graph, data, nms = onnx_nms.cut_exported_nms(graph, data)
        end_to_end = None if nms is None else nms.to_report()
        reference: Reference = onnx_source.OnnxReference(data, graph)
        module = torch_source.from_onnx(graph)
        shape = graph.input_shape
        runtime = "onnxruntime"
    else:
        if fmt == "pt2":
            assert model is not None
            module, example = torch_source.from_exported(model)
            shape = _nchw(input_shape or example, "the exported program's example input")
        else:
            assert torch_factory is not None
            if input_shape is None:
                raise ConfigError("--torch needs --input-shape 1,C,H,W")
            module = torch_source.from_factory(torch_factory)
            shape = _nchw(input_shape, "--input-shape")
        torch_source.check_runs(module, shape)
        reference = torch_source.TorchReference(module)
        runtime = "pytorch"
    float_model = torch_source.to_float_tflite(module, shape)
    return SourceModel(float_model, reference, shape, runtime, end_to_end)


def _nchw(shape: Any, what: str) -> tuple[int, int, int, int]:
    dims = [int(d) for d in (shape or ())]
    if len(dims) != 4 or dims[0] != 1 or dims[1] not in (1, 3) or min(dims) < 1:
        raise ConfigError(
            f"{what} is {dims or 'unknown'}; expected 1,C,H,W with batch 1 and C 1 or 3 "
            "(give --input-shape)"
        )
    return (dims[0], dims[1], dims[2], dims[3])
