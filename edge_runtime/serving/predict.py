"""``POST /v1/predict``: image bytes in, the ``predict --json`` object out."""

from __future__ import annotations

from edge_runtime.daemon.requests import MAX_ID_LENGTH
from edge_runtime.serving.http import HttpError, HttpRequest, HttpResponse, json_response
from edge_runtime.serving.model import ModelService

#: A client's own request id (echoed as ``id``); else one is made.
ID_HEADER = "X-Request-Id"


def predict(service: ModelService, request: HttpRequest) -> HttpResponse:
    """Raises:
    HttpError: empty body, too large, the pipeline's codes."""
    if not request.body:
        raise HttpError("not_an_image", "the body is empty; send the image's bytes")
    rid = request.headers.get(ID_HEADER.lower())
    if rid is not None and (not rid.isprintable() or len(rid) > MAX_ID_LENGTH):
        raise HttpError("bad_request", f"{ID_HEADER}: at most {MAX_ID_LENGTH} printable characters")
    (answer,) = service.predict_images([request.body], rid)
    return json_response(answer)
