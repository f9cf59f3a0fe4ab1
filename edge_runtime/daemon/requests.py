"""Inference requests: turn an MQTT payload (or a dropped file) into image bytes and an id.

A payload is raw image bytes, or JSON ``{"id": str, "image_b64": str}``. The request id
is the JSON ``id``, else the MQTT 5 correlation data, else a stable id derived from the
payload's hash, so a QoS 1 redelivery of the same payload carries the same id. The size
cap is checked before anything else looks at the payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_runtime.b64json import lean_loads
from edge_runtime.errors import InputError

if TYPE_CHECKING:
    from edge_runtime.inference.engine import Prepared

MAX_ID_LENGTH = 256


class RequestError(InputError):
    """A request that cannot be served; ``request_id`` is what the error reply carries,
    ``code`` the short machine-readable ``error`` field; ``response_topic`` and
    ``correlation_data`` (MQTT 5) say where the answer goes besides the errors topic."""

    def __init__(
        self,
        code: str,
        detail: str,
        request_id: str,
        *,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.response_topic = response_topic
        self.correlation_data = correlation_data


@dataclass(frozen=True)
class Request:
    """One image to classify, with where its answer goes. ``tensor``: ``image`` holds
    the model's input tensor itself (its dtype and shape), not an encoded image;
    ``top_k``: how many classes to answer with, when not the daemon's setting;
    ``prepared``: the model's input already prepared (a camera frame: its tensor, where
    it sits on the frame, its preprocessing time), run as it is, ``image`` unused."""

    id: str
    image: bytes
    source: str = "mqtt"
    response_topic: str | None = None
    correlation_data: bytes | None = None
    tensor: bool = False
    top_k: int | None = None
    prepared: Prepared | None = field(default=None, compare=False, repr=False)


def payload_id(payload: bytes) -> str:
    """A stable id for a payload that names none: ``sha256:`` and 16 hex digits."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()[:16]


def correlation_id(correlation: bytes | None) -> str | None:
    if not correlation:
        return None
    try:
        text = correlation.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + correlation.hex()[: MAX_ID_LENGTH - 4]
    return (
        text[:MAX_ID_LENGTH]
        if text.isprintable()
        else "hex:" + correlation.hex()[: MAX_ID_LENGTH - 4]
    )


def parse_request(
    payload: bytes,
    *,
    max_bytes: int,
    correlation_data: bytes | None = None,
    response_topic: str | None = None,
    lean: bool = True,
) -> Request:
    """Parse one ``infer`` payload. A JSON payload's image is decoded straight from the
    payload (``b64json.lean_loads``) when the document allows it; whatever it does not
    allow goes through the full parse, which gives the same request or error for
    every payload (``lean=False``: the full parse alone).

    Raises:
        RequestError: over the size cap, bad JSON (nested too deeply included), bad
            base64, missing image; it carries the response topic and correlation data.
    """
    fallback = correlation_id(correlation_data)
    if len(payload) > max_bytes:
        raise RequestError(
            "too_large",
            f"payload is {len(payload)} bytes; the limit is {max_bytes} "
            "(requests.max_payload_bytes)",
            fallback or payload_id(payload[:max_bytes]),
            response_topic=response_topic,
            correlation_data=correlation_data,
        )
    if not (payload[:1] in (b"{", b"[") or payload.lstrip()[:1] == b"{"):
        return Request(
            fallback or payload_id(payload), payload, "mqtt", response_topic, correlation_data
        )
    found = _lean(payload) if lean else None
    if found is not None:
        raw_id, image = found
        request_id = str(raw_id) if raw_id is not None else fallback or payload_id(payload)
        return Request(request_id, image, "mqtt", response_topic, correlation_data)
    return _parse_json(payload, fallback, response_topic, correlation_data)


def _lean(payload: bytes) -> tuple[str | int | None, bytes] | None:
    """The JSON id (None: none) and the image of a document the full parse accepts,
    found without copying the image; None when the full parse must decide."""
    found = lean_loads(payload)
    if found is None:
        return None
    doc, images = found
    if not isinstance(doc, dict):
        return None
    raw_id = doc.get("id")
    if raw_id is not None and not _valid_id(raw_id):
        return None
    b64 = doc.get("image_b64")
    image = images.get(b64) if isinstance(b64, str) else None
    if image is None or isinstance(raw_id, str) and raw_id in images:
        return None
    return raw_id, image


def _valid_id(raw_id: object) -> bool:
    return (
        isinstance(raw_id, (str, int))
        and not isinstance(raw_id, bool)
        and len(str(raw_id)) <= MAX_ID_LENGTH
    )


def _parse_json(
    payload: bytes,
    fallback: str | None,
    response_topic: str | None,
    correlation_data: bytes | None,
) -> Request:
    """The full parse of a JSON payload. The payload is hashed only for an id that
    neither the document nor the correlation data gives."""
    request_id = fallback

    def current_id() -> str:
        return request_id if request_id is not None else payload_id(payload)

    def refuse(code: str, detail: str) -> RequestError:
        return RequestError(
            code,
            detail,
            current_id(),
            response_topic=response_topic,
            correlation_data=correlation_data,
        )

    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise refuse("bad_json", f"payload looks like JSON but is not valid: {exc}") from exc
    except RecursionError as exc:  # a 2 kB payload of "[[[[..." nests past the stack
        raise refuse("bad_json", "payload looks like JSON but nests too deeply") from exc
    if not isinstance(doc, dict):
        raise refuse("bad_json", 'expected a JSON object {"id", "image_b64"}')
    raw_id = doc.get("id")
    if raw_id is not None:
        if not _valid_id(raw_id):
            raise refuse(
                "bad_json",
                f'"id" must be a string of at most {MAX_ID_LENGTH} characters',
            )
        request_id = str(raw_id)
    b64 = doc.get("image_b64")
    if not isinstance(b64, str) or not b64:
        raise refuse("bad_json", 'missing "image_b64" (the image as base64 text)')
    try:
        image = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise refuse("bad_base64", f'"image_b64" is not valid base64: {exc}') from exc
    if not image:
        raise refuse("bad_base64", '"image_b64" decodes to no bytes')
    return Request(current_id(), image, "mqtt", response_topic, correlation_data)
