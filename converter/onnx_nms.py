"""ONNX exports with their detection post-processing built in: find the node that starts
it (``NonMaxSuppression``, or ``TopK`` of an NMS-free end-to-end head) and the raw YOLO
head that feeds it, so the converter can cut the graph back to that head and let the
device's decoder do the rest.

Exporters that build NMS into the model (YOLOv7-style ``--end2end`` ONNX exports,
Ultralytics' ``nms=True``) run the raw head (``[1, 4 + classes, N]`` or
``[1, N, 5 + classes]``) through slices, box conversions and score products into the
node's boxes and scores, and gather its selected indices into ``[K, 7]`` or ``[1, K, 6]``
rows. Every tensor both the boxes and the scores are computed from is a candidate for the
head; which one is the head is decided by its shape (``onnx_source`` runs them), nearest
the node first. End-to-end heads without NMS (YOLOv10, YOLO26) pick their ``[1, K, 6]``
rows of x1, y1, x2, y2, score, class with ``TopK`` from a ``[1, 4 + classes, N]`` head
whose boxes are corners already; the cut model gets four nodes that turn them into the
centres and sizes a ``yolov8`` head carries. The analysis reads the graph's plain values;
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
TOPK_OP = "TopK"
_CENTRES = "edge_convert_centres"  # names of the nodes and constants added to a TopK head


@dataclass(frozen=True)
class ExportedNms:
    """The post-processing an export carried: its first node, and what its constant
    inputs gave (NMS thresholds and boxes per class; TopK's k)."""

    op: str  # NonMaxSuppression | TopK
    node: str
    head: str  # the tensor that feeds it, now (through the corner conversion) the output
    iou_threshold: float | None = None
    score_threshold: float | None = None
    max_boxes_per_class: int | None = None
    top_k: int | None = None

    def to_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": self.op,
            "node": self.node,
            "head": self.head,
            "replaced_by": "the device's YOLO decoder",
        }
        if self.op == NMS_OP:
            out["iou_threshold"] = self.iou_threshold
            out["score_threshold"] = self.score_threshold
            out["max_boxes_per_class"] = self.max_boxes_per_class
        else:
            out["top_k"] = self.top_k
            out["boxes"] = "corners, turned into centre and size"
        return out


def find(graph: Graph) -> Node | None:
    """The graph's first ``NonMaxSuppression`` node, else its first ``TopK`` (an
    end-to-end head's); a ``TopK`` before an NMS only pre-selects the NMS's candidates."""
    nms = next((n for n in graph.nodes if n.op == NMS_OP), None)
    return nms or next((n for n in graph.nodes if n.op == TOPK_OP), None)


def head_candidates(graph: Graph, start: Node) -> list[str]:
    """Tensors computed from the image that all of ``start``'s data inputs (an NMS node's
    boxes and scores, a TopK's scores) are computed from, nearest it first."""
    producer = {out: pos for pos, node in enumerate(graph.nodes) for out in node.outputs if out}
    live = _from_image(graph)
    feeds = start.inputs[:2] if start.op == NMS_OP else start.inputs[:1]
    common = set.intersection(*(_ancestors(graph, producer, name) for name in feeds))
    return sorted(
        (name for name in common if name in live and name in producer),
        key=lambda name: -producer[name],
    )


def carried(graph: Graph, start: Node, head: str) -> ExportedNms:
    """What the node's constant inputs say (``None`` where an input is absent or is
    computed in the graph)."""
    constants = _constants(graph)

    def number(position: int) -> float | None:
        name = start.inputs[position] if len(start.inputs) > position else ""
        value = constants.get(name) if name else None
        if value is None or np.asarray(value).size != 1:
            return None
        return float(np.asarray(value).reshape(-1)[0])

    if start.op == TOPK_OP:
        k = number(1)
        return ExportedNms(TOPK_OP, start.name, head, top_k=None if k is None else int(k))
    boxes = number(2)
    return ExportedNms(
        NMS_OP,
        start.name,
        head,
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


def cut_exported_nms(graph: Graph, data: bytes) -> tuple[Graph, bytes, ExportedNms | None]:
    """The model cut back to the YOLO head its NMS (or end-to-end TopK) is fed by, with
    what that node carried; the model unchanged (and ``None``) when it has neither.

    Raises:
        ModelError: the node is fed by no tensor of a YOLO head's shape for the input
            size (for TopK: of a YOLOv8 head's, as end-to-end heads are).
    """
    start = find(graph)
    if start is None:
        return graph, data, None
    candidates = head_candidates(graph, start)
    shapes = tensor_shapes(data, graph, candidates, needed(graph, candidates))
    _, channels, height, width = graph.input_shape
    nhwc = (1, height, width, channels)
    wanted = ("yolov8",) if start.op == TOPK_OP else ("yolov8", "yolov5")
    head = next(
        (n for n in candidates if yolo_format_from_shape(shapes.get(n, ()), nhwc) in wanted), None
    )
    if head is None:
        anchors = yolo_anchors(height, width)
        heads = f"[1, 4 + classes, {anchors}]"
        if start.op == NMS_OP:
            heads += f" or [1, {3 * anchors}, 5 + classes]"
        raise ModelError(
            f"ONNX operator {start.op} (node {start.name!r}) is fed by no YOLO head: none of "
            f"the tensors it is computed from is {heads} for a {height}x{width} input; "
            "export the model without its detection post-processing"
        )
    appended, constants = _centres(head) if start.op == TOPK_OP else ((), {})
    cut_graph, cut_data = cut(data, graph, needed(graph, [head]), head, appended, constants)
    return cut_graph, cut_data, carried(graph, start, head)


def _centres(head: str) -> tuple[tuple[Node, ...], dict[str, np.ndarray]]:
    """Nodes after a ``[1, 4 + classes, N]`` head whose box rows are x1, y1, x2, y2 that
    make them centre x, centre y, width, height: ``(low + high) / 2`` and
    ``high - low``."""
    c = _CENTRES
    constants: dict[str, np.ndarray] = {
        f"{c}_0": np.array([0], np.int64),
        f"{c}_2": np.array([2], np.int64),
        f"{c}_4": np.array([4], np.int64),
        f"{c}_end": np.array([np.iinfo(np.int64).max], np.int64),
        f"{c}_axis": np.array([1], np.int64),
        f"{c}_half": np.array(0.5, np.float32),
    }

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> Node:
        return Node(op, f"{c}/{output}", tuple(inputs), (f"{c}_{output}",), attrs)

    def t(name: str) -> str:
        return f"{c}_{name}"

    nodes = (
        node("Slice", [head, t("0"), t("2"), t("axis")], "low"),
        node("Slice", [head, t("2"), t("4"), t("axis")], "high"),
        node("Slice", [head, t("4"), t("end"), t("axis")], "scores"),
        node("Add", [t("low"), t("high")], "sum"),
        node("Mul", [t("sum"), t("half")], "centre"),
        node("Sub", [t("high"), t("low")], "size"),
        node("Concat", [t("centre"), t("size"), t("scores")], "head", axis=1),
    )
    return nodes, constants


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
