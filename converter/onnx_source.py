"""ONNX models in: the only module that imports ``onnx`` and ``onnxruntime``, and only when
an ``.onnx`` file is converted (extra ``onnx``).

``load`` reads and checks the file and returns its graph as plain values (nodes with
their attributes, initializers as numpy arrays), so that ``converter.onnx_torch`` can run
it with torch operations for ``litert-torch``. A symbolic batch dimension is fixed to 1
(and checked by running the model at batch 1 in onnxruntime); other symbolic dimensions
need ``--input-shape``. The float reference for the accuracy gate is onnxruntime running
the file itself. ``tensor_shapes`` and ``cut`` run and cut a model back to an inner tensor
(``converter.onnx_nms`` uses them to take built-in NMS or an end-to-end head off a YOLO
export).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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


def tensor_shapes(
    data: bytes, graph: Graph, names: Sequence[str], nodes: Sequence[int]
) -> dict[str, tuple[int, ...]]:
    """The shapes at batch 1 of the float tensors ``names`` that may have three dimensions,
    computed by ``nodes`` (positions in the graph), which onnxruntime runs on zeros.

    Raises:
        ModelError: onnxruntime cannot run that part of the model.
    """
    model = onnx.load_from_string(data)
    declared = _declared(model)
    wanted = [
        n
        for n in names
        if declared.get(n, (0, None))[0] == onnx.TensorProto.FLOAT and declared[n][1] in (None, 3)
    ]
    if not wanted:
        return {}
    part = _part(model, nodes, wanted, declared)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 2
    try:
        with captured_output():
            session = onnxruntime.InferenceSession(
                part.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
            values = session.run(
                wanted, {graph.input_name: np.zeros(graph.input_shape, np.float32)}
            )
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise ModelError(
            f"onnxruntime cannot run the model up to its NMS: {_first_line(exc)}"
        ) from exc
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(wanted, values)}


def cut(
    data: bytes,
    graph: Graph,
    nodes: Sequence[int],
    output: str,
    appended: Sequence[Node] = (),
    constants: Mapping[str, np.ndarray] | None = None,
) -> tuple[Graph, bytes]:
    """The model cut back to the tensor ``output``, computed by ``nodes`` (positions in
    the graph), then ``appended`` nodes (reading ``constants``) whose last one's output is
    the model's: its graph and its file's bytes."""
    model = onnx.load_from_string(data)
    final = appended[-1].outputs[0] if appended else output
    part = _part(model, nodes, [output], _declared(model))
    added = dict(constants or {})
    part.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in added.items())
    part.graph.node.extend(
        onnx.helper.make_node(n.op, n.inputs, n.outputs, name=n.name, **n.attrs) for n in appended
    )
    part.graph.output[0].name = final
    kept = tuple(graph.nodes[i] for i in sorted(nodes)) + tuple(appended)
    initializers = {**graph.initializers, **added}
    described = replace(graph, outputs=(final,), nodes=kept, initializers=initializers)
    return described, part.SerializeToString()


def _declared(model: Any) -> dict[str, tuple[int, int | None]]:
    """Each tensor's element type and rank (None: unknown) as shape inference gives them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is a hint; ORT decides
        inferred = model
    graph = inferred.graph
    out: dict[str, tuple[int, int | None]] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        rank = len(tensor.shape.dim) if tensor.HasField("shape") else None
        out[info.name] = (tensor.elem_type, rank)
    return out


def _part(
    model: Any, nodes: Sequence[int], outputs: Sequence[str], declared: Mapping[str, Any]
) -> Any:
    """A copy of ``model`` with only ``nodes`` and the initializers they read, whose
    outputs are ``outputs``."""
    part = onnx.ModelProto()
    part.CopyFrom(model)
    graph = part.graph
    kept = [graph.node[i] for i in sorted(nodes)]
    used = {name for node in kept for name in node.input}
    initializers = [i for i in graph.initializer if i.name in used]
    weights = {i.name for i in model.graph.initializer}
    # older exports list weights as inputs too: keep only those still read
    inputs = [i for i in graph.input if i.name not in weights or i.name in used]
    for repeated in (graph.node, graph.initializer, graph.input, graph.output, graph.value_info):
        del repeated[:]
    graph.node.extend(kept)
    graph.initializer.extend(initializers)
    graph.input.extend(inputs)
    graph.output.extend(
        onnx.helper.make_tensor_value_info(
            name, declared.get(name, (onnx.TensorProto.FLOAT, None))[0], None
        )
        for name in outputs
    )
    return part


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
