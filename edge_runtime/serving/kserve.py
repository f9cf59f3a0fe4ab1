"""The Open Inference Protocol (KServe v2): health, server and model metadata,
readiness and ``infer`` with JSON tensors or the binary tensor data extension.

An infer request has one input: a BYTES tensor of encoded images (shape ``[N]``), or the
model's input tensor (its datatype, shape ``[1, H, W, C]``). The outputs are the model's,
dequantised to FP32 (a detection model's as four tensors), one row per image.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edge_runtime import __version__
from edge_runtime.serving.http import HttpError, HttpRequest, HttpResponse, json_response
from edge_runtime.serving.model import MAX_INSTANCES, ModelService, to_dtype
from edge_runtime.serving.tensors import (
    datatype,
    encode_outputs,
    header_size,
    read_inputs,
    split_body,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "tflite"


def live() -> HttpResponse:
    return json_response({"live": True})


def ready(service: ModelService) -> HttpResponse:
    ok = service.ready()
    return json_response({"ready": ok}, 200 if ok else 503)


def server_metadata() -> HttpResponse:
    return json_response(
        {"name": "edge-runtime", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


def model_metadata(service: ModelService, name: str, version: str | None) -> HttpResponse:
    service.check(name, version)
    inp = service.input()
    return json_response(
        {
            "name": service.name,
            "versions": [service.version],
            "platform": PLATFORM,
            "inputs": [
                {"name": inp.name, "datatype": datatype(inp.dtype), "shape": list(inp.shape)}
            ],
            "outputs": [
                {"name": t.name, "datatype": "FP32", "shape": list(t.shape)}
                for t in service.outputs()
            ],
        }
    )


def model_ready(service: ModelService, name: str, version: str | None) -> HttpResponse:
    service.check(name, version)
    return json_response({"name": service.name, "ready": True})


def infer(
    service: ModelService, name: str, version: str | None, request: HttpRequest
) -> HttpResponse:
    """Raises:
    HttpError: bad_json, bad_tensor, bad_base64, too_large, the pipeline's codes."""
    service.check(name, version)
    header_length = request.headers.get(HEADER_LENGTH.lower())
    service.check_json(request.body[: header_size(request.body, header_length)])
    doc, binary = split_body(request.body, header_length)
    inputs = read_inputs(doc, binary, max_bytes_elements=MAX_INSTANCES)
    if len(inputs) != 1:
        raise HttpError(
            "bad_tensor", f"one input expected (an image or the model's), got {len(inputs)}"
        )
    _, kind, shape, data = inputs[0]
    if kind == "BYTES":
        per_image = service.scores_of_images(data)
    else:
        spec = service.input()
        if datatype(spec.dtype) != kind:
            raise HttpError(
                "bad_tensor", f"the model's input is {datatype(spec.dtype)}, got {kind}"
            )
        per_image = service.scores_of_tensors(
            [service.input_tensor(to_dtype(data, np.dtype(spec.dtype), "the input"))]
        )
    names = [t.name for t in service.outputs()]
    wanted, binary_names = _requested(doc, names)
    outputs: list[tuple[str, np.ndarray]] = []
    for pos, out_name in enumerate(names):
        if out_name not in wanted:
            continue
        parts = [tensors[pos] for tensors in per_image]
        if len({p.shape[1:] for p in parts}) > 1:
            raise HttpError(
                "bad_tensor",
                f"output {out_name!r} differs in shape between images; send one per request",
            )
        outputs.append((out_name, np.concatenate(parts, axis=0) if parts[0].ndim else parts[0]))
    docs, blob = encode_outputs(outputs, binary_names)
    answer: dict[str, Any] = {
        "model_name": service.name,
        "model_version": service.version,
        "outputs": docs,
    }
    if isinstance(doc.get("id"), str):
        answer["id"] = doc["id"]
    head = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    if not blob:
        return HttpResponse(200, head)
    return HttpResponse(
        200,
        head + blob,
        content_type="application/octet-stream",
        headers=((HEADER_LENGTH, str(len(head))),),
    )


def _requested(doc: dict[str, Any], names: list[str]) -> tuple[set[str], set[str]]:
    """The outputs asked for (all when none are named) and those wanted as binary data.

    Raises:
        HttpError: bad_json (an unknown output).
    """
    given = doc.get("parameters")
    params: dict[str, Any] = given if isinstance(given, dict) else {}
    all_binary = bool(params.get("binary_data_output", False))
    requested = doc.get("outputs")
    if requested is None:
        return set(names), set(names) if all_binary else set()
    if not isinstance(requested, list):
        raise HttpError("bad_json", '"outputs" must be a list')
    wanted: set[str] = set()
    binary: set[str] = set()
    for item in requested:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in names:
            raise HttpError("bad_json", f"no output {name!r}; the model has {', '.join(names)}")
        wanted.add(name)
        p = item.get("parameters") or {}
        if p.get("binary_data", all_binary) if isinstance(p, dict) else all_binary:
            binary.add(name)
    return wanted, binary
