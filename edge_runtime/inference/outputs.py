"""Which output tensor is which: classification scores, detection parts, or raw.

In order of trust: the bundle manifest says it (``outputs.kind``, and for detection
``outputs.format``: ``ssd``, ``yolov5``, ``yolov8`` or ``yolo-end2end``, with
``outputs.box_units``); else the ``TFLite_Detection_PostProcess`` op's own output order
(boxes, classes, scores, count); else the tensor names a detection export gives them;
else, for a bare ``.tflite``, one output of exactly a YOLO head's shape for the model's
input size (``[1, 4 + classes, anchors]`` or ``[1, 3 * anchors, 5 + classes]``, anchors
being the cells of strides 8, 16 and 32, as Ultralytics' TFLite export writes them, boxes
normalised); else one score vector is a classifier, and anything else is raw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_runtime.errors import ModelError
from edge_runtime.inference.types import BOX_UNITS, DETECTION_FORMATS, OutputKind, TensorSpec

DETECTION_ROLES = ("boxes", "classes", "scores", "count")
_NAME_HINTS = {
    "boxes": ("box",),
    "classes": ("class",),
    "scores": ("score",),
    "count": ("num", "count"),
}


@dataclass(frozen=True)
class OutputLayout:
    kind: OutputKind
    tensors: tuple[TensorSpec, ...]
    roles: Mapping[str, int]  # detection role -> position in ``tensors``
    format: str | None = None  # detection layout: ssd | yolov5 | yolov8 | yolo-end2end
    box_units: str = "normalized"  # YOLO box coordinates: normalized | pixels

    def tensor(self, role: str) -> TensorSpec:
        return self.tensors[self.roles[role]]


def resolve_layout(
    tensors: Sequence[TensorSpec],
    *,
    manifest_outputs: Mapping[str, Any] | None = None,
    detection_op_outputs: Sequence[int] | None = None,
    input_shape: Sequence[int] | None = None,
) -> OutputLayout:
    """Decide the output kind and, for detection, which tensor plays which role.

    Raises:
        ModelError: the manifest names tensors or roles the model does not have.
    """
    specs = tuple(tensors)
    if manifest_outputs is not None:
        return _from_manifest(specs, manifest_outputs)
    if detection_op_outputs is not None and len(detection_op_outputs) == 4:
        by_index = {t.index: pos for pos, t in enumerate(specs)}
        if all(i in by_index for i in detection_op_outputs):
            roles = {role: by_index[i] for role, i in zip(DETECTION_ROLES, detection_op_outputs)}
            return OutputLayout("detection", specs, roles, "ssd")
    if len(specs) == 4:
        named = _roles_from_names(specs)
        if named is not None:
            return OutputLayout("detection", specs, named, "ssd")
    if len(specs) == 1 and input_shape is not None:
        fmt = yolo_format_from_shape(specs[0].shape, input_shape)
        if fmt is not None:
            return OutputLayout("detection", specs, {}, fmt)
    if len(specs) == 1 and _is_score_vector(specs[0].shape):
        return OutputLayout("classification", specs, {})
    return OutputLayout("raw", specs, {})


def yolo_anchors(height: int, width: int) -> int:
    """Grid cells of a YOLO head with strides 8, 16 and 32 (8400 at 640x640)."""
    return sum(-(-height // s) * -(-width // s) for s in (8, 16, 32))


def yolo_format_from_shape(shape: Sequence[int], input_shape: Sequence[int]) -> str | None:
    """``yolov8`` or ``yolov5`` when ``shape`` is exactly that head's for an NHWC input of
    ``input_shape``; else ``None``."""
    if len(shape) != 3 or shape[0] != 1 or len(input_shape) != 4:
        return None
    anchors = yolo_anchors(int(input_shape[1]), int(input_shape[2]))
    if shape[2] == anchors and shape[1] >= 5:
        return "yolov8"
    if shape[1] == 3 * anchors and shape[2] >= 6:
        return "yolov5"
    return None


def _is_score_vector(shape: tuple[int, ...]) -> bool:
    dims = [d for d in shape if d != 1]
    return len(dims) == 1 and dims[0] >= 2


def _roles_from_names(specs: Sequence[TensorSpec]) -> dict[str, int] | None:
    roles: dict[str, int] = {}
    for role, hints in _NAME_HINTS.items():
        matches = [pos for pos, t in enumerate(specs) if any(h in t.name.lower() for h in hints)]
        if len(matches) != 1:
            return None
        roles[role] = matches[0]
    return roles if len(set(roles.values())) == 4 else None


def _from_manifest(specs: tuple[TensorSpec, ...], outputs: Mapping[str, Any]) -> OutputLayout:
    kind = outputs.get("kind", "raw")
    if kind not in ("classification", "detection", "raw"):
        raise ModelError(
            f"manifest outputs.kind is {kind!r}; expected classification, detection or raw"
        )
    described = list(outputs.get("tensors") or [])
    if described and len(described) != len(specs):
        raise ModelError(
            f"manifest describes {len(described)} output tensors, the model has {len(specs)}"
        )
    if kind != "detection":
        return OutputLayout(kind, specs, {})
    fmt = outputs.get("format") or "ssd"
    units = outputs.get("box_units") or "normalized"
    if fmt not in DETECTION_FORMATS or units not in BOX_UNITS:
        raise ModelError(
            f"manifest outputs.format {fmt!r} / box_units {units!r}: expected one of "
            f"{', '.join(DETECTION_FORMATS)} / {', '.join(BOX_UNITS)}"
        )
    if fmt != "ssd":
        if len(specs) != 1:
            raise ModelError(f"a {fmt} model has one output tensor, this one has {len(specs)}")
        return OutputLayout("detection", specs, {}, fmt, units)
    by_name = {t.name: pos for pos, t in enumerate(specs)}
    roles: dict[str, int] = {}
    for pos, entry in enumerate(described):
        role = entry.get("role")
        if role in DETECTION_ROLES:
            roles[role] = by_name.get(entry.get("name"), pos)
    missing = [r for r in DETECTION_ROLES if r not in roles]
    if missing:
        raise ModelError(f"manifest detection outputs lack the roles {', '.join(missing)}")
    return OutputLayout("detection", specs, roles, "ssd")
