"""Model files made inside a test from the committed fixtures.

``edgetpu_like``: the detection model with its custom op renamed ``edgetpu-custom-op``,
which is how a model compiled by ``edgetpu_compiler`` looks to the runtime (the rest of a
compiled model is an opaque blob the op carries). The bytes are a valid flatbuffer: the
op name's string is rewritten in place with a shorter length.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.conftest import MODELS

DETECTION_OP = b"TFLite_Detection_PostProcess"
EDGETPU_OP = b"edgetpu-custom-op"


def edgetpu_like(folder: Path) -> Path:
    data = bytearray((MODELS / "detect_int8.tflite").read_bytes())
    at = data.index(struct.pack("<I", len(DETECTION_OP)) + DETECTION_OP)
    data[at : at + 4] = struct.pack("<I", len(EDGETPU_OP))
    data[at + 4 : at + 4 + len(EDGETPU_OP) + 1] = EDGETPU_OP + b"\0"
    path = folder / "compiled_edgetpu.tflite"
    path.write_bytes(bytes(data))
    return path


def fallback_bundle(folder: Path) -> Path:
    """A bundle as ``edge-convert --edgetpu`` makes it when the compiler ran: the compiled
    model as ``model.tflite`` and the uncompiled one beside it as ``model_cpu.tflite``.
    The manifest describes the model's tensors as the runtime reads them."""
    from edge_runtime.bundle.writer import write_bundle
    from edge_runtime.inference.engine import Engine
    from tests.unit.bundle_factory import manifest, real_clock_times

    cpu = (MODELS / "detect_int8.tflite").read_bytes()
    engine = Engine.load(MODELS / "detect_int8.tflite", delegate="cpu")  # tensors as allocated
    layout, (inp,) = engine.layout, engine.inputs
    engine.close()
    roles = {layout.tensors[pos].index: role for role, pos in layout.roles.items()}
    fields = manifest(
        name="squares",
        version="1.0.0",
        compatible=["*"],
        labels=None,
        input={
            "shape": list(inp.shape),
            "dtype": inp.dtype,
            "scale": inp.quantization.scale,
            "zero_point": inp.quantization.zero_point,
            "mean": 0.0,
            "std": 255.0,
            "resize": "stretch",
            "color": "RGB",
        },
        outputs={
            "kind": layout.kind,
            "tensors": [
                {
                    "name": t.name,
                    "role": roles.get(t.index),
                    "shape": list(t.shape),
                    "dtype": t.dtype,
                    "scale": t.quantization.scale,
                    "zero_point": t.quantization.zero_point,
                }
                for t in layout.tensors
            ],
        },
        **real_clock_times(),
    )
    files = {"model.tflite": edgetpu_like(folder).read_bytes(), "model_cpu.tflite": cpu}
    return write_bundle(folder / "squares.edgebundle", fields, files)
