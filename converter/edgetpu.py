"""Edge TPU compatibility: a pure check of every op and tensor, and ``edgetpu_compiler``.

The rules follow Coral's "TensorFlow models on the Edge TPU" page: tensors int8/uint8
(int32 biases allowed), shapes static, at most 3 dimensions larger than 1, and only the
operations in its supported list. The compiler maps ops from the start of the graph
until the first op it cannot map; that op and every op after it run on the CPU.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.errors import ModelError
from edge_runtime.inference.builtin_ops import BUILTIN_OPS, TENSOR_TYPES
from edge_runtime.inference.flatbuf import FlatBufferError, Table

#: Operations the Edge TPU compiler can map (Coral documentation, compiler 16).
SUPPORTED_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "HARD_SWISH",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)
#: Ops the compiler leaves to the CPU by design (e.g. SSD post-processing) — expected.
CPU_BY_DESIGN = frozenset({"TFLite_Detection_PostProcess"})
_INT_TYPES = frozenset({"int8", "uint8"})
COMPILER = "edgetpu_compiler"


@dataclass(frozen=True)
class OpCheck:
    position: int
    op: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class EdgeTpuReport:
    ops: tuple[OpCheck, ...]
    first_cpu_op: int | None  # position of the first op that cannot be mapped
    compiler: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_ops(self) -> tuple[OpCheck, ...]:
        if self.first_cpu_op is None:
            return ()
        return self.ops[self.first_cpu_op :]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ops_total": len(self.ops),
            "ops_on_edgetpu": len(self.ops) - len(self.cpu_ops),
            "fully_mapped": self.first_cpu_op is None,
            "cpu_fallback": [
                {
                    "position": c.position,
                    "op": c.op,
                    "problems": list(c.problems) or ["follows an op that runs on the CPU"],
                }
                for c in self.cpu_ops
            ],
            "compiler": self.compiler,
        }


def check_model(model: bytes) -> EdgeTpuReport:
    """Check every op of the main subgraph against the Edge TPU's requirements.

    Raises:
        ModelError: the bytes are not a readable TFLite model.
    """
    try:
        root = Table.root(model)
        codes = [_op_name(c) for c in root.tables(1)]
        subgraph = next(root.tables(2))
        tensors = list(subgraph.tables(0))
        buffers = list(root.tables(4))
        checks = []
        for position, op in enumerate(subgraph.tables(3)):
            index = op.scalar(0, "I")
            name = codes[index] if index < len(codes) else f"UNKNOWN_{index}"
            used = [i for i in list(op.scalars(1, "i")) + list(op.scalars(2, "i")) if i >= 0]
            activations = [tensors[i] for i in used if not _is_constant(tensors[i], buffers)]
            checks.append(OpCheck(position, name, tuple(_problems(name, activations))))
    except (FlatBufferError, IndexError, StopIteration, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the model's ops for the Edge TPU check: {exc}") from exc
    first = next((c.position for c in checks if c.problems), None)
    return EdgeTpuReport(tuple(checks), first)


def _is_constant(tensor: Table, buffers: list[Table]) -> bool:
    """Weights, biases and shapes: tensors whose buffer holds data."""
    index = tensor.scalar(2, "I")
    if index <= 0 or index >= len(buffers):
        return False
    buffer = buffers[index]
    return buffer.has(1) or (buffer.has(0) and len(buffer.bytes_vector(0)) > 0)


def _problems(op: str, tensors: list[Table]) -> list[str]:
    """What keeps ``op`` off the Edge TPU, given its non-constant tensors."""
    problems = []
    if op in CPU_BY_DESIGN:
        problems.append("custom op: runs on the CPU by design")
    elif op not in SUPPORTED_OPS:
        problems.append("operation not supported by the Edge TPU")
    for t in tensors:
        dtype = TENSOR_TYPES.get(t.scalar(1, "b"), "unknown")
        name = t.string(3) or "?"
        if dtype not in _INT_TYPES and op not in CPU_BY_DESIGN:
            problems.append(f"tensor {name} is {dtype}, not int8/uint8")
        if any(d < 0 for d in t.scalars(7, "i")):
            problems.append(f"tensor {name} has a dynamic shape")
        if sum(1 for d in t.scalars(0, "i") if d > 1) > 3:
            problems.append(f"tensor {name} has more than 3 dimensions larger than 1")
    return problems


def _op_name(code: Table) -> str:
    builtin = max(code.scalar(0, "b"), code.scalar(3, "i"))
    if builtin == 32:  # CUSTOM
        return code.string(1) or "CUSTOM"
    return BUILTIN_OPS.get(builtin, f"BUILTIN_{builtin}")


def compile_model(model: bytes, *, timeout: float = 600) -> tuple[bytes | None, dict[str, Any]]:
    """Run ``edgetpu_compiler`` when it is on the PATH.

    Returns the compiled model (``None`` when the compiler is absent or failed) and a
    dict for the report: ``available``, ``version``, ``returncode``, ``log``.
    """
    exe = shutil.which(COMPILER)
    if exe is None:
        return None, {
            "available": False,
            "log": f"{COMPILER} is not on the PATH; the bundle holds the CPU model only. "
            "Install it on an x86-64 Linux host (Coral's apt repository) to compile.",
        }
    with tempfile.TemporaryDirectory(prefix="edge-convert-tpu-") as tmp:
        src = Path(tmp) / "model.tflite"
        src.write_bytes(model)
        try:
            done = subprocess.run(
                [exe, "-s", "-o", tmp, str(src)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, {
                "available": True,
                "returncode": None,
                "log": f"{COMPILER} did not finish: {exc}",
            }
        info: dict[str, Any] = {
            "available": True,
            "path": exe,
            "returncode": done.returncode,
            "log": (done.stdout + done.stderr).strip(),
        }
        out = Path(tmp) / "model_edgetpu.tflite"
        if done.returncode != 0 or not out.exists():
            return None, info
        return out.read_bytes(), info


__all__ = ["check_model", "compile_model", "EdgeTpuReport", "SUPPORTED_OPS"]
