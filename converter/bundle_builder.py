"""Assemble the bundle: manifest fields, golden vectors, files; write it atomically.

The manifest's ``input`` records the normalisation, resize mode and colour order used
at calibration, so the device preprocesses exactly as the host measured; ``outputs``
records which tensor is which; ``metrics`` holds the conversion report.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from converter.runner import ModelRunner
from edge_runtime.bundle.manifest import SCHEMA_VERSION, format_utc
from edge_runtime.bundle.writer import write_bundle
from edge_runtime.errors import ModelError
from edge_runtime.inference.modelfile import read_model
from edge_runtime.inference.outputs import resolve_layout
from edge_runtime.inference.types import InputSpec, channel_json

MODEL_MEMBER = "model.tflite"
CPU_MODEL_MEMBER = "model_cpu.tflite"  # the uncompiled model beside an Edge TPU one
FLOAT_MODEL_MEMBER = "model_float.tflite"
LABELS_MEMBER = "labels.txt"
GOLDEN_MEMBER = "golden.npz"


def output_kind(
    model: bytes,
    *,
    input_shape: Sequence[int] | None = None,
    output_format: str | None = None,
) -> tuple[str, dict[int, str], str | None]:
    """``classification``, ``detection`` or ``raw``, detection roles by tensor index (SSD),
    and the YOLO layout when there is one, decided by the same rules the runtime applies
    to a bare ``.tflite`` (a YOLO head is recognised by its exact shape for the input
    size), unless ``output_format`` (``--output-format``) names the layout.

    Raises:
        ModelError: ``output_format`` names a layout the model's outputs do not have.
    """
    mf = read_model(model)
    layout = resolve_layout(
        mf.outputs, detection_op_outputs=mf.detection_outputs, input_shape=input_shape
    )
    if output_format is not None and output_format != layout.format:
        if output_format == "ssd" or len(mf.outputs) != 1:
            raise ModelError(
                f"--output-format {output_format}: the model's outputs "
                f"{[list(t.shape) for t in mf.outputs]} are not that layout"
            )
        return "detection", {}, output_format
    roles = {layout.tensors[pos].index: role for role, pos in layout.roles.items()}
    head = layout.format if layout.format not in (None, "ssd") else None
    return layout.kind, roles, head


def golden_vectors(runner: ModelRunner, inputs: Sequence[np.ndarray]) -> bytes:
    """``golden.npz``: ``inputs`` (N, H, W, C in the input dtype) and ``output_K`` (the
    outputs the host interpreter produced, stacked), compressed."""
    outs: list[list[np.ndarray]] = [[] for _ in runner.outputs]
    for tensor in inputs:
        for k, value in enumerate(runner.run(tensor)):
            outs[k].append(value[0] if value.shape[:1] == (1,) else value)
    arrays = {"inputs": np.concatenate(list(inputs))}
    arrays.update({f"output_{k}": np.stack(v) for k, v in enumerate(outs)})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def manifest_for(
    *,
    name: str,
    version: str,
    runner: ModelRunner,
    model: bytes,
    spec: InputSpec,
    labels: bool,
    golden: bool,
    metrics: Mapping[str, Any],
    expires_days: int,
    compatible: Sequence[str],
    now: datetime | None = None,
    detection_format: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest (without ``files``, which the writer fills). ``detection_format``:
    a YOLO model's ``{"format", "box_units"}``, written into ``outputs`` (SSD and other
    models leave them out, so runtimes older than YOLO support still read them)."""
    created = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    roles: dict[int, str] = {}
    if detection_format is not None:
        kind = "detection"
    else:
        kind, roles, _ = output_kind(model)
    norm = spec.normalization
    return {
        "schema": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created": format_utc(created),
        "expires": format_utc(created + timedelta(days=expires_days)),
        "compatible": list(compatible),
        "model": MODEL_MEMBER,
        "labels": LABELS_MEMBER if labels else None,
        "golden": GOLDEN_MEMBER if golden else None,
        "input": {
            "shape": list(runner.input_shape),
            "dtype": runner.input_dtype,
            "scale": runner.input_scale,
            "zero_point": runner.input_zero_point,
            "mean": None if norm is None else channel_json(norm.mean),
            "std": None if norm is None else channel_json(norm.std),
            "resize": spec.resize,
            "color": spec.color,
        },
        "outputs": {
            "kind": kind,
            "tensors": [
                {
                    "name": o.name,
                    "role": roles.get(o.index),
                    "shape": list(o.shape),
                    "dtype": o.dtype,
                    "scale": o.scale,
                    "zero_point": o.zero_point,
                }
                for o in runner.outputs
            ],
            **(dict(detection_format) if detection_format is not None else {}),
        },
        "metrics": dict(metrics),
    }


def write(out: Path, manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> Path:
    """Write the bundle atomically (nothing is left at ``out`` if this fails)."""
    return write_bundle(out, manifest, files)
