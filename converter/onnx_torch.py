"""An ONNX graph run with torch operations, so that ``litert-torch`` can convert it.

Each ONNX operator maps to one small function of torch tensors (``OPS``); an operator
that is not there is refused by name before anything runs. The graph's input shape is
fixed, so everything that depends only on shapes and weights (``Shape``, ``Gather`` of a
shape, ``Concat`` of sizes, ...) is computed once when the module is built and kept as a
constant: ``forward`` runs only the operators that depend on the image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from converter.onnx_source import Graph, Node
from edge_runtime.errors import ModelError

Value = Any  # a torch tensor, or a Python list of them for multi-output operators

# ONNX TensorProto data types -> torch dtypes
_DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
}


def _numbers(value: Value) -> list[float]:
    """A constant's values as Python numbers (numpy constants are read without torch,
    whose tensors made while tracing for export hold no values)."""
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.reshape(-1).tolist()]
    return [float(v) for v in np.asarray(value).reshape(-1).tolist()]


def _ints(value: Value) -> list[int]:
    return [int(v) for v in _numbers(value)]


def _t(value: Value) -> Value:
    """A torch tensor (numpy constants become one)."""
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _opt(inputs: Sequence[Value | None], i: int) -> Value | None:
    return inputs[i] if len(inputs) > i else None


def _pads_to_torch(pads: Sequence[int]) -> list[int]:
    """ONNX ``[a_begin, b_begin, ..., a_end, b_end]`` to F.pad's last-axis-first pairs."""
    half = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(half)):
        out += [int(pads[axis]), int(pads[axis + half])]
    return out


def _conv(x: Value, w: Value, b: Value | None, a: Mapping[str, Any]) -> Value:
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ModelError(f"Conv auto_pad={a['auto_pad']} is not supported; export with pads")
    pads = list(a.get("pads", [0] * 2 * (w.dim() - 2)))
    half = len(pads) // 2
    if pads[:half] != pads[half:]:
        x, pads = F.pad(x, _pads_to_torch(pads)), [0] * len(pads)
    return F.conv2d(
        x,
        w,
        b,
        stride=tuple(a.get("strides", [1, 1])),
        padding=tuple(pads[:half]),
        dilation=tuple(a.get("dilations", [1, 1])),
        groups=int(a.get("group", 1)),
    )


def _pool(kind: str) -> Callable[[Sequence[Value], Mapping[str, Any]], Value]:
    def run(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
        x = i[0]
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            fill = float("-inf") if kind == "max" else 0.0
            x, pads = F.pad(x, _pads_to_torch(pads), value=fill), [0, 0, 0, 0]
        kernel = tuple(int(k) for k in a["kernel_shape"])
        stride = tuple(int(s) for s in a.get("strides", kernel))
        padding = (int(pads[0]), int(pads[1]))
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "max":
            return F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil)
        include = bool(a.get("count_include_pad", 0))
        return F.avg_pool2d(x, kernel, stride, padding, ceil, include)

    return run


def _gemm(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    x = _t(i[0]).t() if a.get("transA") else _t(i[0])
    w = _t(i[1]).t() if a.get("transB") else _t(i[1])
    y = float(a.get("alpha", 1.0)) * (x @ w)
    c = _opt(i, 2)
    return y if c is None else y + float(a.get("beta", 1.0)) * _t(c)


def _reshape(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    shape = _ints(i[1])
    if not a.get("allowzero"):
        shape = [i[0].shape[k] if d == 0 else d for k, d in enumerate(shape)]
    return i[0].reshape(shape)


def _slice(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    x = i[0]
    starts, ends = _ints(i[1]), _ints(i[2])
    axes = _ints(i[3]) if _opt(i, 3) is not None else list(range(len(starts)))
    steps = _ints(i[4]) if _opt(i, 4) is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        size = x.shape[axis]
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        if step > 0:
            start, end = max(0, min(start, size)), max(0, min(end, size))
        else:  # ONNX clamps a backwards slice to [-1, size - 1]
            start, end = max(-1, min(start, size - 1)), max(-1, min(end, size - 1))
        picked = torch.arange(start, end, step, dtype=torch.int64)
        x = torch.index_select(x, axis, picked) if step != 1 else x.narrow(axis, start, end - start)
    return x


def _split(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    axis = int(a.get("axis", 0))
    sizes = _opt(i, 1)
    if sizes is not None:
        return list(torch.split(i[0], _ints(sizes), dim=axis))
    if "split" in a:
        return list(torch.split(i[0], list(a["split"]), dim=axis))
    parts = int(a.get("num_outputs", a.get("_outputs", 1)))
    return list(torch.chunk(i[0], parts, dim=axis))


def _axes(i: Sequence[Value], a: Mapping[str, Any]) -> list[int] | None:
    if _opt(i, 1) is not None:
        return _ints(i[1])
    return list(a["axes"]) if "axes" in a else None


def _unsqueeze(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    x = i[0]
    axes = _axes(i, a) or []
    rank = x.dim() + len(axes)
    for axis in sorted(d % rank for d in axes):
        x = x.unsqueeze(axis)
    return x


def _squeeze(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    axes = _axes(i, a)
    if axes is None:
        return i[0].squeeze()
    x = i[0]
    for axis in sorted((d % x.dim() for d in axes), reverse=True):
        x = x.squeeze(axis)
    return x


def _reduce_mean(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    axes = _axes(i, a)
    dims = list(range(i[0].dim())) if axes is None else axes
    return i[0].mean(dim=dims, keepdim=bool(a.get("keepdims", 1)))


def _resize(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    x = i[0]
    scales, sizes = _opt(i, 2), _opt(i, 3)
    if sizes is not None and _numbers(sizes):
        size = _ints(sizes)[2:]
    elif scales is not None and _numbers(scales):
        factors = _numbers(scales)[2:]
        size = [int(np.floor(d * f)) for d, f in zip(x.shape[2:], factors)]
    else:
        raise ModelError("Resize without scales or sizes is not supported")
    mode = a.get("mode", "nearest")
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest")
    if mode == "linear":
        corners = a.get("coordinate_transformation_mode", "half_pixel") == "align_corners"
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=corners)
    raise ModelError(f"Resize mode {mode!r} is not supported")


def _clip(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    low, high = _opt(i, 1), _opt(i, 2)
    lo = _numbers(low)[0] if low is not None else a.get("min")
    hi = _numbers(high)[0] if high is not None else a.get("max")
    return torch.clamp(i[0], min=lo, max=hi)


def _pad(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    pads = _ints(i[1]) if _opt(i, 1) is not None else list(a["pads"])
    value = _opt(i, 2)
    fill = _numbers(value)[0] if value is not None and _numbers(value) else 0.0
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[
        a.get("mode", "constant")
    ]
    if mode == "constant":
        return F.pad(i[0], _pads_to_torch(pads), value=fill)
    return F.pad(i[0], _pads_to_torch(pads), mode=mode)


def _batch_norm(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    mean, var, weight, bias = (_t(v) for v in (i[3], i[4], i[1], i[2]))
    return F.batch_norm(i[0], mean, var, weight, bias, False, 0.0, float(a.get("epsilon", 1e-5)))


def _softmax(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    return torch.softmax(i[0], dim=int(a.get("axis", -1)))


def _constant(a: Mapping[str, Any]) -> Value:
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in a:
            return torch.as_tensor(np.array(a[key]))
    raise ModelError(f"Constant with attributes {sorted(a)} is not supported")


def _constant_of_shape(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    value = np.array(a.get("value", np.zeros(1, np.float32))).reshape(-1)
    return torch.full(_ints(i[0]), value[0].item(), dtype=torch.from_numpy(value).dtype)


def _gather(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    axis = int(a.get("axis", 0))
    if not isinstance(i[1], torch.Tensor) and np.ndim(i[1]) == 0:
        return i[0].select(axis, int(np.asarray(i[1])))
    indices = _t(i[1]).long()
    if indices.dim() == 0:
        return i[0].select(axis, int(indices))
    return torch.index_select(i[0], axis, indices.reshape(-1)).reshape(
        *i[0].shape[:axis], *indices.shape, *i[0].shape[axis + 1 :]
    )


def _scatter_nd(i: Sequence[Value], a: Mapping[str, Any]) -> Value:
    if a.get("reduction", "none") != "none":
        raise ModelError(f"ScatterND reduction={a['reduction']} is not supported")
    data, indices = _t(i[0]).clone(), _t(i[1]).long()
    data[tuple(indices[..., k] for k in range(indices.shape[-1]))] = _t(i[2])
    return data


OPS: dict[str, Callable[[Sequence[Value], Mapping[str, Any]], Value]] = {
    "Conv": lambda i, a: _conv(i[0], _t(i[1]), None if _opt(i, 2) is None else _t(i[2]), a),
    "BatchNormalization": _batch_norm,
    "Relu": lambda i, a: torch.relu(i[0]),
    "LeakyRelu": lambda i, a: F.leaky_relu(i[0], float(a.get("alpha", 0.01))),
    "Sigmoid": lambda i, a: torch.sigmoid(i[0]),
    "Tanh": lambda i, a: torch.tanh(i[0]),
    "HardSigmoid": lambda i, a: torch.clamp(
        float(a.get("alpha", 0.2)) * i[0] + float(a.get("beta", 0.5)), 0, 1
    ),
    "HardSwish": lambda i, a: F.hardswish(i[0]),
    "Clip": _clip,
    "Exp": lambda i, a: torch.exp(i[0]),
    "Sqrt": lambda i, a: torch.sqrt(i[0]),
    "Pow": lambda i, a: torch.pow(_t(i[0]), _t(i[1])),
    "Add": lambda i, a: _t(i[0]) + _t(i[1]),
    "Sub": lambda i, a: _t(i[0]) - _t(i[1]),
    "Mul": lambda i, a: _t(i[0]) * _t(i[1]),
    "Div": lambda i, a: _t(i[0]) / _t(i[1]),
    "MatMul": lambda i, a: _t(i[0]) @ _t(i[1]),
    "Gemm": _gemm,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda i, a: i[0].mean(dim=(2, 3), keepdim=True),
    "ReduceMean": _reduce_mean,
    "Flatten": lambda i, a: i[0].flatten(int(a.get("axis", 1)) if a.get("axis", 1) else 0),
    "Reshape": _reshape,
    "Transpose": lambda i, a: i[0].permute(*a.get("perm", reversed(range(i[0].dim())))),
    "Concat": lambda i, a: torch.cat([_t(v) for v in i], dim=int(a["axis"])),
    "Split": _split,
    "Slice": _slice,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Gather": _gather,
    "ScatterND": _scatter_nd,
    "Shape": lambda i, a: torch.tensor(list(i[0].shape), dtype=torch.int64),
    "Cast": lambda i, a: i[0].to(_DTYPES[int(a["to"])]),
    "Constant": lambda i, a: _constant(a),
    "ConstantOfShape": _constant_of_shape,
    "Expand": lambda i, a: i[0] * torch.ones(_ints(i[1]), dtype=i[0].dtype),
    "Equal": lambda i, a: torch.eq(_t(i[0]), _t(i[1])),
    "Where": lambda i, a: torch.where(_t(i[0]).bool(), _t(i[1]), _t(i[2])),
    "Identity": lambda i, a: i[0],
    "Dropout": lambda i, a: i[0],
    "Pad": _pad,
    "Resize": _resize,
    "Softmax": _softmax,
}


def check_supported(graph: Graph) -> None:
    """Raises ModelError naming the first operator (and its node) that has no mapping."""
    for node in graph.nodes:
        if node.op not in OPS:
            raise ModelError(
                f"ONNX operator {node.op} (node {node.name!r}) is not supported by the "
                f"converter; supported: {', '.join(sorted(OPS))}"
            )


class OnnxModule(torch.nn.Module):
    """The graph as a module: NCHW float input, the graph's outputs (a tuple if several)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        check_supported(graph)
        self._graph = graph
        constants = {k: torch.from_numpy(np.array(v)) for k, v in graph.initializers.items()}
        self._live, folded = _fold(graph, constants)
        self._names: dict[str, str] = {}
        # integer and small constants (shapes, axes, pads, indices, fill values) stay
        # numpy: an operator reads them as Python numbers, which tracing for export can
        # only do with real values; weights become buffers
        self._plain: dict[str, np.ndarray] = {}
        for position, (name, value) in enumerate(folded.items()):
            if value.is_floating_point() and value.numel() > 1:
                attr = f"c{position}"
                self._names[name] = attr
                self.register_buffer(attr, value, persistent=False)
            else:
                self._plain[name] = value.numpy()

    def forward(self, x: Any) -> Any:
        env: dict[str, Value] = {self._graph.input_name: x}
        for node in self._live:
            inputs = [self._value(env, name) for name in node.inputs]
            _store(env, node, _run(node, inputs))
        outs = tuple(self._value(env, name) for name in self._graph.outputs)
        return outs[0] if len(outs) == 1 else outs

    def _value(self, env: Mapping[str, Value], name: str) -> Value:
        if not name:
            return None
        if name in env:
            return env[name]
        if name in self._plain:
            return self._plain[name]
        return getattr(self, self._names[name])


def _run(node: Node, inputs: Sequence[Value]) -> Value:
    attrs = dict(node.attrs)
    attrs.setdefault("_outputs", len(node.outputs))
    try:
        return OPS[node.op](inputs, attrs)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch's errors for shapes the op cannot take
        raise ModelError(f"ONNX node {node.name!r} ({node.op}) failed: {exc}") from exc


def _store(env: dict[str, Value], node: Node, result: Value) -> None:
    results = result if isinstance(result, list) else [result]
    for name, value in zip(node.outputs, results):
        if name:
            env[name] = value


def _fold(graph: Graph, constants: dict[str, Value]) -> tuple[list[Node], dict[str, Value]]:
    """Run the graph once on zeros: nodes whose inputs are all known without the image
    (weights, constants, shapes) become constants; returns the rest and the constants."""
    known: dict[str, Value] = dict(constants)
    env: dict[str, Value] = {graph.input_name: torch.zeros(graph.input_shape)}
    live: list[Node] = []
    with torch.no_grad():
        for node in graph.nodes:
            static = node.op == "Shape" or all(not n or n in known for n in node.inputs)
            inputs = [None if not n else known.get(n, env.get(n)) for n in node.inputs]
            result = _run(node, inputs)
            _store(env, node, result)
            if static:
                _store(known, node, result)
            else:
                live.append(node)
    used = {n for node in live for n in node.inputs} | set(graph.outputs)
    return live, {k: v for k, v in known.items() if k in used}
