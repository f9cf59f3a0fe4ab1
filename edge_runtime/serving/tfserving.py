"""The TensorFlow Serving REST API: model status, metadata and ``:predict``.

``instances`` are images (``{"b64": ...}``) or the model's input tensor (nested lists,
the batch dimension left out or 1), optionally named after the input
(``{"<input>": ...}``); ``predictions`` hold each instance's scores (a detection model's
four tensors as an object).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from edge_runtime.b64json import lean_loads
from edge_runtime.serving.http import (
    HttpError,
    HttpRequest,
    HttpResponse,
    json_response,
    parse_json,
)
from edge_runtime.serving.model import ModelService, Tensor

DT = {
    "int8": "DT_INT8",
    "uint8": "DT_UINT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "bool": "DT_BOOL",
}
SIGNATURE = "serving_default"


def status(service: ModelService, name: str) -> HttpResponse:
    service.check(name)
    return json_response(
        {
            "model_version_status": [
                {
                    "version": service.version,
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
    )


def _tensor_info(t: Tensor) -> dict[str, Any]:
    return {
        "dtype": DT.get(t.dtype, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in t.shape],
            "unknown_rank": False,
        },
        "name": t.name,
    }


def metadata(service: ModelService, name: str) -> HttpResponse:
    service.check(name)
    inp = service.input()
    signature = {
        "inputs": {inp.name: _tensor_info(inp)},
        "outputs": {t.name: _tensor_info(t) for t in service.outputs()},
        "method_name": "tensorflow/serving/predict",
    }
    return json_response(
        {
            "model_spec": {"name": service.name, "signature_name": "", "version": service.version},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
        }
    )


def predict(service: ModelService, name: str, request: HttpRequest) -> HttpResponse:
    """Raises:
    HttpError: bad_json, bad_base64, bad_tensor, too_large, the pipeline's codes."""
    service.check(name)
    service.check_json(request.body)
    input_name = service.input().name
    doc, decoded = _parse(request.body, input_name)
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise HttpError("bad_json", 'expected {"instances": [...]} (the row format)')
    instances = doc["instances"]
    if not instances:
        raise HttpError("bad_json", '"instances" is empty')
    images: list[bytes] = []
    tensors: list[np.ndarray] = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict) and set(instance) == {input_name}:
            instance = instance[input_name]
        if isinstance(instance, dict):
            text = instance.get("b64")
            if isinstance(text, str) and text in decoded:  # decoded in place already
                images.append(decoded[text])
            else:
                images.append(_b64(instance, i))
        else:
            tensors.append(service.input_tensor(instance, f"instance {i}"))
    if images and tensors:
        raise HttpError("bad_json", "mix of images and tensors; send one kind per request")
    outputs = service.scores_of_images(images) if images else service.scores_of_tensors(tensors)
    names = [t.name for t in service.outputs()]
    predictions: list[Any] = []
    for tensors_out in outputs:
        rows = [t[0].tolist() if t.ndim > 1 else t.tolist() for t in tensors_out]
        predictions.append(rows[0] if len(rows) == 1 else dict(zip(names, rows)))
    return json_response({"predictions": predictions})


def _parse(body: bytes, input_name: str) -> tuple[Any, dict[str, bytes]]:
    """The document, and the images ``lean_loads`` decoded from the body in place (by
    placeholder) when each is an instance's ``b64`` (an instance that passes
    ``_b64``'s checks); otherwise the full parse and no images."""
    found = lean_loads(body)
    if found is not None:
        doc, decoded = found
        instances = doc.get("instances") if isinstance(doc, dict) else None
        used = set()
        for instance in instances if isinstance(instances, list) else ():
            if isinstance(instance, dict) and set(instance) == {input_name}:
                instance = instance[input_name]
            if isinstance(instance, dict) and set(instance) == {"b64"}:
                used.add(instance["b64"] if isinstance(instance["b64"], str) else "")
        if used >= decoded.keys():
            return doc, decoded
    return parse_json(body), {}


def _b64(instance: dict[str, Any], i: int) -> bytes:
    text = instance.get("b64")
    if set(instance) != {"b64"} or not isinstance(text, str):
        raise HttpError("bad_json", f'instance {i}: expected {{"b64": "<image as base64>"}}')
    try:
        image = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HttpError("bad_base64", f"instance {i}: not valid base64: {exc}") from exc
    if not image:
        raise HttpError("bad_base64", f"instance {i}: decodes to no bytes")
    return image
