"""ONNX detectors with NMS built in, made here from the tiny YOLO-layout models of
``torch_models`` (no weights download), for the converter's tests.

``with_nms`` appends what an end-to-end ONNX export (YOLOv7 ``--end2end``, YOLOv5-style
``--nms``) puts after the raw head: centre boxes to corners by a matrix product, the class
scores transposed to ``[1, classes, N]``, ``NonMaxSuppression`` with constant thresholds,
and the selected boxes gathered into ``[K, 7]`` rows (batch, x1, y1, x2, y2, class,
score). ``unrecognisable_nms`` feeds the op from something that is no YOLO head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

IOU, SCORE, MAX_BOXES = 0.5, 0.25, 20


def export_plain(model: Any, path: Path, size: int) -> Path:
    """``model`` (a tiny YOLOv8-layout module) exported by ``torch.onnx.export``."""
    import torch

    torch.onnx.export(
        model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, input_names=["images"]
    )
    return path


def with_nms(plain: Path, path: Path) -> Path:
    """The plain YOLOv8-layout export ``[1, 4 + classes, N]`` with NMS appended."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(plain))
    graph = model.graph
    head = graph.output[0].name
    classes = graph.output[0].type.tensor_type.shape.dim[1].dim_value - 4
    to_corners = np.array(
        [[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], np.float32
    )
    constants: dict[str, np.ndarray] = {
        "nms_convert": to_corners,
        "nms_starts_box": np.array([0], np.int64),
        "nms_ends_box": np.array([4], np.int64),
        "nms_starts_cls": np.array([4], np.int64),
        "nms_ends_cls": np.array([4 + classes], np.int64),
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
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    node = helper.make_node
    graph.node.extend(
        [
            node("Transpose", [head], ["rows"], perm=[0, 2, 1]),
            node("Slice", ["rows", "nms_starts_box", "nms_ends_box", "nms_axis"], ["xywh"]),
            node("MatMul", ["xywh", "nms_convert"], ["corners"]),
            node("Slice", ["rows", "nms_starts_cls", "nms_ends_cls", "nms_axis"], ["cls_rows"]),
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
                "Concat",
                ["batch_col", "det_boxes", "class_col", "score_col"],
                ["detections"],
                axis=1,
            ),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("detections", TensorProto.FLOAT, [None, 7]))
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


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


def with_topk_head(plain: Path, path: Path, keep: int = 10) -> Path:
    """The plain YOLOv8-layout export with a YOLOv10-style end-to-end head appended: the
    ``keep`` rows of the best class scores picked by ``TopK`` and ``GatherElements``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(plain))
    graph = model.graph
    head = graph.output[0].name
    width = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    constants: dict[str, np.ndarray] = {
        "e2e_starts": np.array([4], np.int64),
        "e2e_ends": np.array([width], np.int64),
        "e2e_axis": np.array([2], np.int64),
        "e2e_k": np.array([keep], np.int64),
        "e2e_repeat": np.array([1, 1, width], np.int64),
        "e2e_last": np.array([-1], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    node = helper.make_node
    graph.node.extend(
        [
            node("Transpose", [head], ["rows"], perm=[0, 2, 1]),
            node("Slice", ["rows", "e2e_starts", "e2e_ends", "e2e_axis"], ["cls_rows"]),
            node("ReduceMax", ["cls_rows", "e2e_axis"], ["best"], keepdims=0),  # opset 18
            node("TopK", ["best", "e2e_k"], ["top_scores", "top_index"], name="e2e_topk"),
            node("Unsqueeze", ["top_index", "e2e_last"], ["top_column"]),
            node("Tile", ["top_column", "e2e_repeat"], ["top_rows"]),
            node("GatherElements", ["rows", "top_rows"], ["picked"], axis=1),
        ]
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, keep, width])
    )
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
