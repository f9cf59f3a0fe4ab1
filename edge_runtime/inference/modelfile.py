"""What a ``.tflite`` file says about itself, read without any interpreter library.

Pure functions over the model bytes: the op list (to detect a model compiled for the
Edge TPU, and to find the SSD post-processing op whose outputs name boxes, classes,
scores and count), the TFLite metadata (normalisation, label file names) and the
associated files (labels) zipped after the flatbuffer.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from dataclasses import dataclass, field

from edge_runtime.errors import ModelError
from edge_runtime.inference.builtin_ops import BUILTIN_OPS, TENSOR_TYPES
from edge_runtime.inference.flatbuf import FlatBufferError, Table
from edge_runtime.inference.types import Quantization, TensorSpec

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
DETECTION_POSTPROCESS_OP = "TFLite_Detection_PostProcess"
_METADATA_NAME = "TFLITE_METADATA"
_CUSTOM = 32  # BuiltinOperator.CUSTOM
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions.NormalizationOptions
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType.TENSOR_AXIS_LABELS
_MAX_EMBEDDED_FILE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ModelMetadata:
    """The parts of TFLite metadata the runtime uses."""

    name: str | None = None
    version: str | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    label_files: tuple[str, ...] = ()  # TENSOR_AXIS_LABELS files of the first output


@dataclass(frozen=True)
class ModelFile:
    schema_version: int
    op_counts: dict[str, int] = field(default_factory=dict)
    detection_outputs: tuple[int, ...] | None = (
        None  # tensor indices: boxes, classes, scores, count
    )
    metadata: ModelMetadata = ModelMetadata()
    description: str | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(sorted(self.op_counts))

    @property
    def is_edgetpu(self) -> bool:
        """True when the model was compiled by ``edgetpu_compiler`` and needs the Edge TPU."""
        return EDGETPU_CUSTOM_OP in self.op_counts


def looks_like_tflite(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == b"TFL3"


def read_model(data: bytes) -> ModelFile:
    """Parse the op list and metadata of a TFLite flatbuffer.

    Raises:
        ModelError: the bytes are not a TFLite model.
    """
    if not looks_like_tflite(data):
        raise ModelError(
            f"not a TFLite model: expected the 'TFL3' file identifier at byte 4, "
            f"found {bytes(data[4:8])!r} ({len(data)} bytes)"
        )
    try:
        model = Table.root(data)
        codes = [_op_name(code) for code in model.tables(1)]
        counts: Counter[str] = Counter()
        detection: tuple[int, ...] | None = None
        inputs: tuple[TensorSpec, ...] = ()
        outputs: tuple[TensorSpec, ...] = ()
        for subgraph_no, subgraph in enumerate(model.tables(2)):
            if subgraph_no == 0:
                tensors = list(subgraph.tables(0))
                inputs = tuple(_tensor(tensors, i) for i in subgraph.scalars(1, "i"))
                outputs = tuple(_tensor(tensors, i) for i in subgraph.scalars(2, "i"))
            for op in subgraph.tables(3):
                index = op.scalar(0, "I")
                name = codes[index] if index < len(codes) else f"UNKNOWN_{index}"
                counts[name] += 1
                if name == DETECTION_POSTPROCESS_OP and subgraph_no == 0:
                    detection = tuple(op.scalars(2, "i"))
        buffers = list(model.tables(4))
        metadata = ModelMetadata()
        for entry in model.tables(6):
            if entry.string(0) == _METADATA_NAME:
                buffer_index = entry.scalar(1, "I")
                if buffer_index < len(buffers):
                    metadata = _read_metadata(_buffer_bytes(data, buffers[buffer_index]))
        return ModelFile(
            schema_version=model.scalar(0, "I"),
            op_counts=dict(counts),
            detection_outputs=detection,
            metadata=metadata,
            description=model.string(3),
            inputs=inputs,
            outputs=outputs,
        )
    except (FlatBufferError, IndexError, UnicodeDecodeError) as exc:
        raise ModelError(f"corrupt TFLite model: {exc}") from exc


def _tensor(tensors: list, index: int) -> TensorSpec:  # type: ignore[type-arg]
    tensor: Table = tensors[index]
    quant = tensor.table(4)
    scale, zero_point = 0.0, 0
    if quant is not None:
        scales, zero_points = quant.floats(2), quant.scalars(3, "q")
        if len(scales) == 1:  # per-axis quantization is reported as unquantized here
            scale, zero_point = scales[0], int(zero_points[0]) if zero_points else 0
    signature = tensor.scalars(7, "i")
    return TensorSpec(
        name=tensor.string(3) or f"tensor_{index}",
        index=index,
        shape=tuple(tensor.scalars(0, "i")),
        dtype=TENSOR_TYPES.get(tensor.scalar(1, "b"), "unknown"),
        quantization=Quantization(scale, zero_point),
        dynamic=any(d < 0 for d in signature),
    )


def _op_name(code: Table) -> str:
    builtin = max(code.scalar(0, "b"), code.scalar(3, "i"))
    if builtin == _CUSTOM:
        return code.string(1) or "CUSTOM"
    return BUILTIN_OPS.get(builtin, f"BUILTIN_{builtin}")


def _buffer_bytes(data: bytes, buffer: Table) -> bytes:
    if buffer.has(1):  # large models keep buffers outside the flatbuffer (offset, size)
        offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")
        return bytes(data[offset : offset + size])
    return buffer.bytes_vector(0)


def _read_metadata(blob: bytes) -> ModelMetadata:
    try:
        root = Table.root(blob)
        mean: tuple[float, ...] = ()
        std: tuple[float, ...] = ()
        label_files: tuple[str, ...] = ()
        for subgraph in root.tables(3):
            for tensor in subgraph.tables(2):  # input_tensor_metadata
                for unit in tensor.tables(4):  # process_units
                    options = unit.table(1)
                    if unit.scalar(0, "B") == _NORMALIZATION_OPTIONS and options is not None:
                        mean, std = tuple(options.floats(0)), tuple(options.floats(1))
                break
            for tensor in subgraph.tables(3):  # output_tensor_metadata
                label_files = tuple(
                    f.string(0) or ""
                    for f in tensor.tables(6)
                    if f.scalar(2, "b") == _TENSOR_AXIS_LABELS
                )
                break
            break
        return ModelMetadata(root.string(0), root.string(2), mean, std, label_files)
    except (FlatBufferError, UnicodeDecodeError):
        return ModelMetadata()  # metadata is advisory: a broken block is ignored


def embedded_files(data: bytes) -> dict[str, bytes]:
    """Files zipped after the flatbuffer (TFLite metadata associated files), by name."""
    if b"PK\x05\x06" not in data[-65_557:]:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {
                info.filename: archive.read(info)
                for info in archive.infolist()
                if not info.is_dir() and info.file_size <= _MAX_EMBEDDED_FILE
            }
    except (zipfile.BadZipFile, OSError, ValueError):
        return {}
