"""ONNX exports with NMS built in: find the ``NonMaxSuppression`` node and the raw YOLO
head that feeds it, so the converter can cut the graph back to that head.

Exporters that build NMS into the model (YOLOv5/YOLOv7 ``--end2end``-style ONNX exports,
Ultralytics' ``nms=True``) run the raw head (``[1, 4 + classes, N]`` or
``[1, N, 5 + classes]``) through slices, box conversions and score products into the
node's boxes and scores, and gather its selected indices into ``[K, 7]`` or
``[1, K, 6]`` rows. Every tensor both the boxes and the scores are computed from is a
candidate for the head; which one is the head is decided by its shape (``onnx_source``
runs them), nearest the NMS first. The analysis reads the graph's plain values;
``onnx_source`` runs and cuts the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from converter.onnx_source import Graph, Node, cut, tensor_shapes
from edge_runtime.errors import ModelError
from edge_runtime.inference.outputs import yolo_anchors, yolo_format_from_shape

NMS_OP = "NonMaxSuppression"


@dataclass(frozen=True)
class ExportedNms:
    """The NMS node an export carried and the thresholds its constant inputs gave."""

    node: str
    head: str  # the tensor that feeds it, now the model's output
    iou_threshold: float | None
    score_threshold: float | None
    max_boxes_per_class: int | None

    def to_report(self) -> dict[str, Any]:
        return {
            "op": NMS_OP,
            "node": self.node,
            "head": self.head,
            "replaced_by": "the device's YOLO decoder",
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
            "max_boxes_per_class": self.max_boxes_per_class,
        }


def find(graph: Graph) -> Node | None:
    """The graph's first ``NonMaxSuppression`` node, if it has one."""
    return next((n for n in graph.nodes if n.op == NMS_OP), None)


def head_candidates(graph: Graph, nms: Node) -> list[str]:
    """Tensors computed from the image that both the NMS boxes and its scores are computed
    from, nearest the NMS first (the raw head, then what is before it)."""
    producer = {out: pos for pos, node in enumerate(graph.nodes) for out in node.outputs if out}
    live = _from_image(graph)
    boxes = _ancestors(graph, producer, nms.inputs[0])
    scores = _ancestors(graph, producer, nms.inputs[1]) if len(nms.inputs) > 1 else set()
    common = [name for name in boxes & scores if name in live and name in producer]
    return sorted(common, key=lambda name: -producer[name])


def thresholds(graph: Graph, nms: Node, head: str) -> ExportedNms:
    """What the NMS node's constant inputs say (``None`` where an input is absent or is
    computed in the graph)."""
    constants = _constants(graph)

    def number(position: int) -> float | None:
        name = nms.inputs[position] if len(nms.inputs) > position else ""
        value = constants.get(name) if name else None
        if value is None or np.asarray(value).size != 1:
            return None
        return float(np.asarray(value).reshape(-1)[0])

    boxes = number(2)
    return ExportedNms(
        node=nms.name,
        head=head,
        iou_threshold=_rounded(number(3)),
        score_threshold=_rounded(number(4)),
        max_boxes_per_class=None if boxes is None else int(boxes),
    )


def needed(graph: Graph, outputs: Iterable[str]) -> list[int]:
    """Positions of the nodes ``outputs`` are computed by, in graph order."""
    wanted = set(outputs)
    kept: list[int] = []
    for position in reversed(range(len(graph.nodes))):
        node = graph.nodes[position]
        if wanted.intersection(node.outputs):
            kept.append(position)
            wanted.update(n for n in node.inputs if n)
    return kept[::-1]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)  # float32 constants: 0.45 not 0.4500000


def _from_image(graph: Graph) -> set[str]:
    live = {graph.input_name}
    for node in graph.nodes:
        if any(n in live for n in node.inputs):
            live.update(o for o in node.outputs if o)
    return live


def _ancestors(graph: Graph, producer: Mapping[str, int], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if not current or current in seen:
            continue
        seen.add(current)
        if current in producer:
            todo.extend(graph.nodes[producer[current]].inputs)
    return seen


def _constants(graph: Graph) -> dict[str, Any]:
    values: dict[str, Any] = dict(graph.initializers)
    for node in graph.nodes:
        if node.op == "Constant" and node.outputs:
            for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
                if key in node.attrs:
                    values[node.outputs[0]] = np.asarray(node.attrs[key])
    return values


def cut_exported_nms(graph: Graph, data: bytes) -> tuple[Graph, bytes, ExportedNms | None]:
    """The model cut back to the YOLO head its NMS is fed by, with what the NMS carried;
    the model unchanged (and ``None``) when it has no NMS.

    Raises:
        ModelError: the NMS is fed by no tensor of a YOLO head's shape for the input size.
    """
    nms = find(graph)
    if nms is None:
        return graph, data, None
    candidates = head_candidates(graph, nms)
    shapes = tensor_shapes(data, graph, candidates, needed(graph, candidates))
    _, channels, height, width = graph.input_shape
    nhwc = (1, height, width, channels)
    head = next((n for n in candidates if yolo_format_from_shape(shapes.get(n, ()), nhwc)), None)
    if head is None:
        anchors = yolo_anchors(height, width)
        raise ModelError(
            f"ONNX operator {NMS_OP} (node {nms.name!r}) is fed by no YOLO head: none of the "
            f"tensors its boxes and scores come from is [1, 4 + classes, {anchors}] or "
            f"[1, {3 * anchors}, 5 + classes] for a {height}x{width} input; "
            "export the model without NMS"
        )
    cut_graph, cut_data = cut(data, graph, needed(graph, [head]), head)
    return cut_graph, cut_data, thresholds(graph, nms, head)
