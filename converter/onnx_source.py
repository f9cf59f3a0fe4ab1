"""ONNX models in: the only module that imports ``onnx`` and ``onnxruntime``, and only when
an ``.onnx`` file is converted (extra ``onnx``).

``load`` reads and checks the file and returns its graph as plain values (nodes with
their attributes, initializers as numpy arrays), so that ``converter.onnx_torch`` can run
it with torch operations for ``litert-torch``. A symbolic batch dimension is fixed to 1
(and checked by running the model at batch 1 in onnxruntime); other symbolic dimensions
need ``--input-shape``. The float reference for the accuracy gate is onnxruntime running
the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converter.capture import captured_output
from edge_runtime.errors import ConfigError, ModelError

try:
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    onnxruntime.set_default_logger_severity(3)  # errors reach the user as one line, not logs
except ImportError as exc:  # pragma: no cover - depends on the extra being installed
    raise ConfigError(
        "ONNX models need the converter's onnx and torch extras: "
        "pip install 'edge-runtime[onnx,torch]'"
    ) from exc


@dataclass(frozen=True)
class Node:
    op: str
    name: str
    inputs: tuple[str, ...]  # "" for an omitted optional input
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Graph:
    """An ONNX graph as plain values, its one image input fixed at ``input_shape`` (NCHW)."""

    input_name: str
    input_shape: tuple[int, int, int, int]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    initializers: Mapping[str, np.ndarray] = field(hash=False)
    opset: int = 13


def load(path: Path, input_shape: Sequence[int] | None = None) -> tuple[Graph, bytes]:
    """Read, check and describe an ONNX file; returns the graph and the file's bytes.

    Raises:
        ModelError: not a readable ONNX model (a truncated file, say), not one image
            input, or a batch dimension that cannot be 1.
        ConfigError: symbolic dimensions other than the batch and no ``--input-shape``,
            or an ``--input-shape`` that contradicts the model.
    """
    data = Path(path).read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and others
        raise ModelError(
            f"{path} is not a readable ONNX model (truncated or corrupt?): {_first_line(exc)}"
        ) from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - the checker's ValidationError
        raise ModelError(f"{path} is not a valid ONNX model: {_first_line(exc)}") from exc
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelError(f"{path} has {len(inputs)} inputs; an image model has one")
    shape = _input_shape(path, inputs[0], input_shape)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    nodes = tuple(
        Node(
            op=n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}",
            name=n.name or n.op_type,
            inputs=tuple(n.input),
            outputs=tuple(n.output),
            attrs={a.name: _attribute(a) for a in n.attribute},
        )
        for n in graph.node
    )
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    described = Graph(
        input_name=inputs[0].name,
        input_shape=shape,
        outputs=tuple(o.name for o in graph.output),
        nodes=nodes,
        initializers=initializers,
        opset=int(opset),
    )
    return described, data


def _attribute(attr: Any) -> Any:
    """An attribute as a plain value: tensors as numpy arrays, strings as str."""
    if attr.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


def _input_shape(
    path: Path, value_info: Any, given: Sequence[int] | None
) -> tuple[int, int, int, int]:
    dims = value_info.type.tensor_type.shape.dim
    declared = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(declared) != 4:
        raise ModelError(
            f"{path}: input {value_info.name!r} has {len(declared)} dimensions; "
            "an image model's input is [1, 3, H, W]"
        )
    if declared[0] not in (None, 1):
        raise ModelError(
            f"{path}: input {value_info.name!r} has a fixed batch of {declared[0]}; the "
            "converter makes batch-1 models: export with batch 1 or a dynamic batch"
        )
    if given is not None:
        if len(given) != 4 or given[0] != 1:
            raise ConfigError(f"--input-shape must be 1,C,H,W, got {list(given)}")
        for axis, (want, have) in enumerate(zip(declared, given)):
            if want is not None and want != have:
                raise ConfigError(
                    f"--input-shape {list(given)} contradicts the model's input "
                    f"{_shape_text(declared)} at axis {axis}"
                )
        return (1, int(given[1]), int(given[2]), int(given[3]))
    if any(d is None for d in declared[1:]):
        raise ConfigError(
            f"{path}: input {value_info.name!r} is {_shape_text(declared)}: "
            "give its size with --input-shape 1,C,H,W"
        )
    return (1, int(declared[1]), int(declared[2]), int(declared[3]))  # type: ignore[arg-type]


def _shape_text(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


class OnnxReference:
    """onnxruntime running the ONNX file: the float reference (NHWC float input in)."""

    def __init__(self, data: bytes, graph: Graph) -> None:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 2
        try:
            self._session = onnxruntime.InferenceSession(
                data, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ModelError(f"onnxruntime cannot load the model: {_first_line(exc)}") from exc
        self._input = graph.input_name
        self._shape = graph.input_shape
        try:
            with captured_output():  # onnxruntime also logs the failure on stderr
                self._session.run(None, {self._input: np.zeros(self._shape, np.float32)})
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"the model does not run at batch 1 with input {list(self._shape)} "
                f"(a batch dimension it cannot take as 1?): {_first_line(exc)}"
            ) from exc

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        nchw = np.ascontiguousarray(np.transpose(tensor, (0, 3, 1, 2)), dtype=np.float32)
        return [np.asarray(o) for o in self._session.run(None, {self._input: nchw})]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
