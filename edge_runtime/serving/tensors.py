"""The Open Inference Protocol's tensors (KServe v2): datatypes, JSON data and the binary
tensor data extension, pure functions over bytes and arrays.

Binary extension: the body is the JSON header (``Inference-Header-Content-Length``
bytes) followed by each binary input's bytes, in the order of ``inputs``, each input
naming its size in ``parameters.binary_data_size``. A BYTES tensor's elements are each a
4-byte little-endian length and that many bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np

from edge_runtime.serving.http import HttpError, parse_length

#: KServe v2 datatype -> numpy dtype (little-endian, as the protocol sends them)
DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "int8",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
BY_NUMPY = {np.dtype(v).name: k for k, v in DATATYPES.items()}
#: More elements than any tensor may have.
MAX_ELEMENTS = 2**63


def datatype(numpy_name: str) -> str:
    return BY_NUMPY.get(numpy_name, "BYTES")


def header_size(body: bytes, header_length: str | None) -> int:
    """How much of ``body`` is the JSON header (all of it without the header field).

    Raises:
        HttpError: bad_json (not a length within the body).
    """
    if header_length is None:
        return len(body)
    size = parse_length(header_length)
    if not 0 <= size <= len(body):
        raise HttpError(
            "bad_json",
            f"Inference-Header-Content-Length {header_length!r} is not a length within the body",
        )
    return size


def split_body(body: bytes, header_length: str | None) -> tuple[Any, memoryview]:
    """The JSON header and what follows it.

    Raises:
        HttpError: bad_json (header length or JSON).
    """
    size = header_size(body, header_length)
    try:
        doc = json.loads(bytes(body[:size]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HttpError("bad_json", f"the inference header is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise HttpError("bad_json", "the inference header must be a JSON object")
    return doc, memoryview(body)[size:]


def read_inputs(
    doc: dict[str, Any], binary: memoryview, *, max_bytes_elements: int
) -> list[tuple[str, str, list[int], Any]]:
    """Each input as (name, datatype, shape, data): a list of bytes for BYTES, else a
    numpy array of the datatype in that shape. The BYTES tensors may have at most
    ``max_bytes_elements`` elements together (refused before their data is read).

    Raises:
        HttpError: bad_tensor, bad_base64, bad_json.
    """
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HttpError("bad_json", '"inputs" must be a non-empty list of tensors')
    offset = 0
    bytes_elements = 0  # of the BYTES tensors so far
    out = []
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise HttpError("bad_json", f"inputs[{i}] is not an object")
        name, kind, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(kind, str):
            raise HttpError("bad_json", f'inputs[{i}] needs "name" and "datatype"')
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise HttpError("bad_tensor", f"inputs[{i}]: shape must be a list of sizes")
        count = _count(shape, i)
        bytes_elements += count if kind == "BYTES" else 0
        if bytes_elements > max_bytes_elements:
            raise HttpError(
                "bad_tensor",
                f"inputs[{i}]: {bytes_elements} BYTES elements so far; at most "
                f"{max_bytes_elements} per request",
            )
        params = tensor.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if (
                not isinstance(size, int)
                or isinstance(size, bool)
                or size < 0
                or offset + size > len(binary)
            ):
                raise HttpError("bad_tensor", f"inputs[{i}]: binary_data_size beyond the body")
            raw = bytes(binary[offset : offset + size])
            offset += size
            data = _from_binary(raw, kind, count, i)
        elif "data" in tensor:
            data = _from_json(tensor["data"], kind, count, i)
        else:
            raise HttpError("bad_tensor", f'inputs[{i}] has neither "data" nor binary data')
        if kind != "BYTES":
            try:
                data = data.reshape(shape)
            except ValueError as exc:  # no elements, but more than an array may span
                raise HttpError("bad_tensor", f"inputs[{i}]: shape {shape}: {exc}") from exc
        out.append((name, kind, list(shape), data))
    return out


def _count(shape: list[int], i: int) -> int:
    """The elements of ``shape`` (exact: np.prod wraps around in int64).

    Raises:
        HttpError: bad_tensor (more than ``MAX_ELEMENTS``, which no body holds; the exact
            product of a long shape would take time quadratic in its length).
    """
    if 0 in shape:
        return 0
    count = 1
    for size in shape:
        count *= size
        if count > MAX_ELEMENTS:
            raise HttpError("bad_tensor", f"inputs[{i}]: the shape has over 2**63 elements")
    return count


def _from_binary(raw: bytes, kind: str, count: int, i: int) -> Any:
    if kind == "BYTES":
        items: list[bytes] = []
        pos = 0
        while pos < len(raw) and len(items) < count:
            if pos + 4 > len(raw):
                raise HttpError("bad_tensor", f"inputs[{i}]: a BYTES element's length is cut off")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise HttpError("bad_tensor", f"inputs[{i}]: a BYTES element is cut off")
            items.append(raw[pos : pos + length])
            pos += length
        if pos < len(raw):
            raise HttpError("bad_tensor", f"inputs[{i}]: more elements than the shape's {count}")
        if len(items) != count:
            raise HttpError(
                "bad_tensor", f"inputs[{i}]: {len(items)} elements for the shape's {count}"
            )
        return items
    dtype = _dtype(kind, i)
    if len(raw) != count * dtype.itemsize:
        raise HttpError("bad_tensor", f"inputs[{i}]: {len(raw)} bytes for {count} {kind} values")
    return np.frombuffer(raw, dtype=dtype)


def _from_json(data: Any, kind: str, count: int, i: int) -> Any:
    if kind == "BYTES":
        flat = data if isinstance(data, list) else [data]
        items = []
        for item in _flatten(flat):
            text = item.get("b64") if isinstance(item, dict) else item
            if not isinstance(text, str):
                raise HttpError("bad_tensor", f"inputs[{i}]: BYTES elements are base64 strings")
            try:
                items.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise HttpError("bad_base64", f"inputs[{i}]: not valid base64: {exc}") from exc
        if len(items) != count:
            raise HttpError(
                "bad_tensor", f"inputs[{i}]: {len(items)} elements for the shape's {count}"
            )
        return items
    _dtype(kind, i)
    try:
        values = np.asarray(list(_flatten(data if isinstance(data, list) else [data])))
    except (ValueError, TypeError) as exc:
        raise HttpError("bad_tensor", f"inputs[{i}]: data is not a tensor: {exc}") from exc
    if values.size != count or (values.size and values.dtype.kind not in "biuf"):
        raise HttpError("bad_tensor", f"inputs[{i}]: expected {count} numbers in data")
    return values  # converted to the model's dtype by the caller, range checked


def _flatten(data: list[Any], depth: int = 0) -> list[Any]:
    if depth > 32:
        raise HttpError("bad_tensor", "data nests more than 32 levels")
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item, depth + 1) if isinstance(item, list) else [item])
    return out


def _dtype(kind: str, i: int) -> np.dtype:
    if kind not in DATATYPES:
        raise HttpError(
            "bad_tensor",
            f"inputs[{i}]: datatype {kind!r} is not one of {', '.join(DATATYPES)}, BYTES",
        )
    return np.dtype(DATATYPES[kind])


def encode_outputs(
    outputs: list[tuple[str, np.ndarray]], binary: set[str]
) -> tuple[list[dict[str, Any]], bytes]:
    """The response's ``outputs`` (FP32) and the binary data that follows the JSON for
    the outputs named in ``binary``."""
    docs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in outputs:
        values = np.ascontiguousarray(array, dtype="<f4")
        doc: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(values.shape)}
        if name in binary:
            raw = values.tobytes()
            doc["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            doc["data"] = [round(float(v), 7) for v in values.reshape(-1)]
        docs.append(doc)
    return docs, b"".join(blobs)
