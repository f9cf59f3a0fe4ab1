"""ONNX detectors with NMS or an end-to-end head built in, made here from the tiny
YOLO-layout models of ``torch_models`` (no weights download), for the converter's tests.

- ``with_nms`` appends what a YOLOv7-style ``--end2end`` ONNX export puts after the raw
  head: centre boxes to corners by a matrix product, class scores (times objectness for
  the YOLOv5 layout) transposed to ``[1, classes, N]``, ``NonMaxSuppression`` with
  constant thresholds, and the selected boxes gathered into ``[K, 7]`` rows (batch, x1,
  y1, x2, y2, class, score).
- ``with_masked_nms`` appends what Ultralytics' ``nms=True`` export does: the best class
  score, a confidence mask (``Compress``), boxes offset by class, class-blind NMS on them.
- ``export_end_to_end`` exports a YOLOv10-style end-to-end detector (``TopK``, no NMS).
- ``unrecognisable_nms`` feeds the op from something that is no YOLO head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 64  # the tiny models' input
IOU, SCORE, MAX_BOXES = 0.5, 0.25, 20
MASKED_IOU, MASKED_CONF = 0.7, 0.25
#: centre x, centre y, width, height (a row) times this: x1, y1, x2, y2
TO_CORNERS = np.array(
    [[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], np.float32
)


def export_plain(model: Any, path: Path, size: int) -> Path:
    """``model`` (a tiny YOLO-layout module) exported by ``torch.onnx.export``."""
    import torch

    torch.onnx.export(
        model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, input_names=["images"]
    )
    return path


def head_of(plain: Path) -> tuple[str, list[int]]:
    """The plain export's output: its name and shape."""
    import onnx

    output = onnx.load(str(plain)).graph.output[0]
    return output.name, [d.dim_value for d in output.type.tensor_type.shape.dim]


def _append(
    plain: Path,
    path: Path,
    constants: dict[str, np.ndarray],
    nodes: Sequence[Any],
    output: tuple[str, Sequence[int | None]],
) -> Path:
    """``plain`` with ``nodes`` (and their ``constants``) after it and ``output`` as the
    model's one output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(plain))
    graph = model.graph
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(output[0], TensorProto.FLOAT, output[1]))
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def with_nms(plain: Path, path: Path, layout: str = "yolov8") -> Path:
    """The plain export (``[1, 4 + classes, N]`` or, ``yolov5``, ``[1, N, 5 + classes]``)
    with NMS appended."""
    from onnx import TensorProto, helper

    head, shape = head_of(plain)
    v5 = layout == "yolov5"
    width = shape[2] if v5 else shape[1]
    node = helper.make_node
    constants: dict[str, np.ndarray] = {
        "nms_convert": TO_CORNERS,
        "nms_box_0": np.array([0], np.int64),  # slices: start, end
        "nms_box_1": np.array([4], np.int64),
        "nms_obj_0": np.array([4], np.int64),
        "nms_obj_1": np.array([5], np.int64),
        "nms_cls_0": np.array([5 if v5 else 4], np.int64),
        "nms_cls_1": np.array([width], np.int64),
        "nms_axis": np.array([2], np.int64),
        "nms_axis0": np.array([0], np.int64),
        "nms_axis1": np.array([1], np.int64),
        "nms_max": np.array([MAX_BOXES], np.int64),
        "nms_iou": np.array([IOU], np.float32),
        "nms_score": np.array([SCORE], np.float32),
        "nms_col0": np.array(0, np.int64),
        "nms_col1": np.array(1, np.int64),
        "nms_col2": np.array(2, np.int64),
    }
    rows = head if v5 else "rows"  # [1, N, values]
    if v5:
        prepare = [
            node("Slice", [rows, "nms_obj_0", "nms_obj_1", "nms_axis"], ["objectness"]),
            node("Slice", [rows, "nms_cls_0", "nms_cls_1", "nms_axis"], ["cls_only"]),
            node("Mul", ["cls_only", "objectness"], ["cls_rows"]),
        ]
    else:
        prepare = [
            node("Transpose", [head], [rows], perm=[0, 2, 1]),
            node("Slice", [rows, "nms_cls_0", "nms_cls_1", "nms_axis"], ["cls_rows"]),
        ]
    nodes = [
        *prepare,
        node("Slice", [rows, "nms_box_0", "nms_box_1", "nms_axis"], ["xywh"]),
        node("MatMul", ["xywh", "nms_convert"], ["corners"]),
        node("Transpose", ["cls_rows"], ["cls_scores"], perm=[0, 2, 1]),
        node(
            "NonMaxSuppression",
            ["corners", "cls_scores", "nms_max", "nms_iou", "nms_score"],
            ["selected"],
            name="exported_nms",
        ),
        node("Gather", ["selected", "nms_col0"], ["sel_batch"], axis=1),
        node("Gather", ["selected", "nms_col1"], ["sel_class"], axis=1),
        node("Gather", ["selected", "nms_col2"], ["sel_box"], axis=1),
        node("Squeeze", ["corners", "nms_axis0"], ["corners_2d"]),
        node("Gather", ["corners_2d", "sel_box"], ["det_boxes"], axis=0),
        node("GatherND", ["cls_scores", "selected"], ["det_scores"]),
        node("Cast", ["sel_batch"], ["batch_f"], to=TensorProto.FLOAT),
        node("Cast", ["sel_class"], ["class_f"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["batch_f", "nms_axis1"], ["batch_col"]),
        node("Unsqueeze", ["class_f", "nms_axis1"], ["class_col"]),
        node("Unsqueeze", ["det_scores", "nms_axis1"], ["score_col"]),
        node(
            "Concat", ["batch_col", "det_boxes", "class_col", "score_col"], ["detections"], axis=1
        ),
    ]
    return _append(plain, path, constants, nodes, ("detections", [None, 7]))


def with_masked_nms(plain: Path, path: Path) -> Path:
    """The plain YOLOv8-layout export with NMS appended as Ultralytics' ``nms=True`` export
    builds it: rows above a confidence, boxes offset by class, one class-blind NMS (no score
    threshold input), ``[n, 6]`` rows of corners, score and class."""
    from onnx import TensorProto, helper

    head, shape = head_of(plain)
    node = helper.make_node
    constants: dict[str, np.ndarray] = {
        "u_convert": TO_CORNERS,
        "u_zero": np.array([0], np.int64),
        "u_one": np.array([1], np.int64),
        "u_four": np.array([4], np.int64),
        "u_width": np.array([shape[1]], np.int64),
        "u_conf": np.array(MASKED_CONF, np.float32),
        "u_offset": np.array(4096.0, np.float32),
        "u_max": np.array([MAX_BOXES], np.int64),
        "u_iou": np.array([MASKED_IOU], np.float32),
        "u_col2": np.array(2, np.int64),
    }
    nodes = [
        node("Transpose", [head], ["u_rows3"], perm=[0, 2, 1]),
        node("Squeeze", ["u_rows3", "u_zero"], ["u_rows"]),
        node("Slice", ["u_rows", "u_zero", "u_four", "u_one"], ["u_xywh"]),
        node("Slice", ["u_rows", "u_four", "u_width", "u_one"], ["u_cls"]),
        node("ReduceMax", ["u_cls", "u_one"], ["u_best"], keepdims=0),
        node("ArgMax", ["u_cls"], ["u_class"], axis=1, keepdims=0),
        node("Greater", ["u_best", "u_conf"], ["u_mask"]),
        node("Compress", ["u_xywh", "u_mask"], ["u_kept_xywh"], axis=0),
        node("Compress", ["u_best", "u_mask"], ["u_kept_score"], axis=0),
        node("Compress", ["u_class", "u_mask"], ["u_kept_class"], axis=0),
        node("MatMul", ["u_kept_xywh", "u_convert"], ["u_corners"]),
        node("Cast", ["u_kept_class"], ["u_class_f"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["u_class_f", "u_one"], ["u_class_col"]),
        node("Mul", ["u_class_col", "u_offset"], ["u_shift"]),
        node("Add", ["u_corners", "u_shift"], ["u_shifted"]),
        node("Unsqueeze", ["u_shifted", "u_zero"], ["u_nms_boxes"]),
        node("Unsqueeze", ["u_kept_score", "u_zero"], ["u_score_row"]),
        node("Unsqueeze", ["u_score_row", "u_zero"], ["u_nms_scores"]),
        node(
            "NonMaxSuppression",
            ["u_nms_boxes", "u_nms_scores", "u_max", "u_iou"],
            ["u_selected"],
            name="masked_nms",
        ),
        node("Gather", ["u_selected", "u_col2"], ["u_keep"], axis=1),
        node("Gather", ["u_corners", "u_keep"], ["u_det_boxes"], axis=0),
        node("Gather", ["u_kept_score", "u_keep"], ["u_det_score"], axis=0),
        node("Gather", ["u_class_f", "u_keep"], ["u_det_class"], axis=0),
        node("Unsqueeze", ["u_det_score", "u_one"], ["u_score_col"]),
        node("Unsqueeze", ["u_det_class", "u_one"], ["u_class_out"]),
        node("Concat", ["u_det_boxes", "u_score_col", "u_class_out"], ["u_out"], axis=1),
    ]
    return _append(plain, path, constants, nodes, ("u_out", [None, 6]))


def export_end_to_end(path: Path, keep: int = 10) -> Path:
    """A YOLOv10-style end-to-end detector exported by ``torch.onnx.export``: the tiny
    YOLOv8-layout head with its boxes as corners (x1, y1, x2, y2, 0..1), then Ultralytics'
    end-to-end post-processing (``TopK`` of the best class scores, gathers, ``TopK`` again)
    to ``[1, keep, 6]`` rows of x1, y1, x2, y2, score, class."""
    import torch

    from tests.support.torch_models import tiny_yolov8

    class EndToEnd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny_yolov8()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raw = self.model(x)  # [1, 4 + classes, N]: centre x, centre y, width, height
            centre, size = raw[:, :2], raw[:, 2:4]
            head = torch.cat([centre - size / 2, centre + size / 2, raw[:, 4:]], dim=1)
            preds = head.permute(0, 2, 1)
            classes = preds.shape[-1] - 4
            boxes, scores = preds[..., :4], preds[..., 4:]
            index = scores.amax(dim=-1).topk(keep)[1].unsqueeze(-1)
            boxes = boxes.gather(dim=1, index=index.repeat(1, 1, 4))
            scores = scores.gather(dim=1, index=index.repeat(1, 1, classes))
            scores, index = scores.flatten(1).topk(keep)
            batch = torch.arange(1)[..., None]
            picked = boxes[batch, torch.div(index, classes, rounding_mode="floor")]
            kind = (index % classes)[..., None].float()
            return torch.cat([picked, scores[..., None], kind], dim=-1)

    return export_plain(EndToEnd().eval(), path, SIZE)


def unrecognisable_nms(path: Path) -> Path:
    """NMS whose boxes and scores are the image itself reshaped: no YOLO head anywhere."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shapes = {
        "box_shape": np.array([1, 48, 4], np.int64),
        "score_shape": np.array([1, 4, 48], np.int64),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["image"], ["act"]),
            helper.make_node("Reshape", ["act", "box_shape"], ["boxes"]),
            helper.make_node("Reshape", ["act", "score_shape"], ["scores"]),
            helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["selected"], name="nms"),
        ],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        initializer=[numpy_helper.from_array(v, k) for k, v in shapes.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
