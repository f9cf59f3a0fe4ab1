"""``edge-runtime inspect``: what a model or bundle contains, without running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge_runtime.bundle.reader import scan_bundle
from edge_runtime.cli.inspect_text import summary_lines
from edge_runtime.inference.outputs import resolve_layout
from edge_runtime.inference.source import load_source
from edge_runtime.inference.types import TensorSpec


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect", help="summarise a model or bundle: input, outputs, labels, accuracy, signatures"
    )
    p.add_argument("model", type=Path, metavar="MODEL", help=".tflite file or .edgebundle")
    p.add_argument(
        "--labels", type=Path, default=None, help="labels file to check against the model"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="everything as JSON: tensors with quantization, ops, labels, the whole manifest",
    )
    p.set_defaults(handler=run)


def _tensor(t: TensorSpec) -> dict[str, Any]:
    return {
        "name": t.name,
        "index": t.index,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "scale": t.quantization.scale,
        "zero_point": t.quantization.zero_point,
        "dynamic": t.dynamic,
    }


def describe(path: Path, labels: Path | None = None) -> dict[str, Any]:
    source = load_source(path, labels_path=labels)
    model = source.model_file
    layout = resolve_layout(
        model.outputs,
        manifest_outputs=source.manifest.get("outputs") if source.manifest is not None else None,
        detection_op_outputs=model.detection_outputs,
        input_shape=model.inputs[0].shape if len(model.inputs) == 1 else None,
    )
    roles = {pos: role for role, pos in layout.roles.items()}
    yolo = layout.kind == "detection" and layout.format not in (None, "ssd")
    return {
        "path": str(path),
        "model": {
            "name": source.identity.name,
            "version": source.identity.version,
            "sha256": source.identity.sha256,
            "bytes": len(source.content),
        },
        "edgetpu_compiled": model.is_edgetpu,
        "inputs": [_tensor(t) for t in model.inputs],
        "output_kind": layout.kind,
        # YOLO layouts only: {"format": yolov5|yolov8|yolo-end2end, "box_units"}
        "detection_format": (
            {"format": layout.format, "box_units": layout.box_units} if yolo else None
        ),
        "outputs": [{**_tensor(t), "role": roles.get(pos)} for pos, t in enumerate(model.outputs)],
        "ops": model.op_counts,
        "labels": list(source.labels) if source.labels is not None else None,
        "labels_source": source.labels_source,
        "metadata": {
            "name": model.metadata.name,
            "version": model.metadata.version,
            "mean": list(model.metadata.mean),
            "std": list(model.metadata.std),
        },
        "manifest": dict(source.manifest) if source.manifest is not None else None,
        "signatures": _signature_keyids(path) if source.manifest is not None else None,
        "file_bytes": path.stat().st_size,
    }


def _signature_keyids(path: Path) -> list[str]:
    """Key ids of a bundle's signatures, as listed (not verified: see ``verify``)."""
    return [s.keyid for s in scan_bundle(path).signatures]


def run(args: argparse.Namespace) -> int:
    info = describe(args.model, args.labels)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("\n".join(summary_lines(info)))
    return 0
