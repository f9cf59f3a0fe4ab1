"""Run a ``.tflite`` on the host through the runtime's interpreter backend.

The converter measures with the very interpreter library the device uses
(``edge_runtime.inference.backend``), so the golden vectors and accuracy it reports are
what ``edge-runtime`` reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from converter.calibration import with_quantization
from edge_runtime.inference.backend import make_interpreter
from edge_runtime.inference.types import InputSpec


@dataclass(frozen=True)
class OutputInfo:
    name: str
    index: int
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


class ModelRunner:
    """One interpreter for one model; ``run`` takes an input tensor, returns raw outputs."""

    def __init__(self, model: bytes, *, num_threads: int = 2) -> None:
        self._interp: Any = make_interpreter(model, num_threads=num_threads)
        self._input = self._interp.get_input_details()[0]
        self.input_dtype = np.dtype(self._input["dtype"]).name
        scale, zero_point = self._input["quantization"]
        self.input_scale, self.input_zero_point = float(scale), int(zero_point)
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self._run_once_for_shapes()
        self.outputs: list[OutputInfo] = [
            OutputInfo(
                name=d["name"],
                index=int(d["index"]),
                shape=tuple(int(x) for x in self._interp.get_tensor(d["index"]).shape),
                dtype=np.dtype(d["dtype"]).name,
                scale=float(d["quantization"][0]),
                zero_point=int(d["quantization"][1]),
            )
            for d in self._interp.get_output_details()
        ]

    def _run_once_for_shapes(self) -> None:
        # Detection post-processing outputs only get their shapes after one invoke.
        self._interp.set_tensor(
            self._input["index"], np.zeros(self.input_shape, self._input["dtype"])
        )
        self._interp.invoke()

    def spec(self, float_spec: InputSpec) -> InputSpec:
        """``float_spec`` (normalisation, resize, colour) for this model's input tensor."""
        if self.input_dtype in ("float32", "float16"):
            return float_spec
        return with_quantization(
            float_spec, self.input_dtype, self.input_scale, self.input_zero_point
        )

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self._interp.set_tensor(self._input["index"], tensor)
        self._interp.invoke()
        return [np.array(self._interp.get_tensor(o.index)) for o in self.outputs]

    def dequantize(self, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Real values: ``scale * (q - zero_point)`` for quantized outputs (widened first)."""
        real = []
        for info, value in zip(self.outputs, outputs):
            if info.scale and value.dtype.kind in "iu":
                real.append(info.scale * (value.astype(np.float64) - info.zero_point))
            else:
                real.append(value.astype(np.float64))
        return real
