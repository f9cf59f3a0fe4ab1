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
) -> Request:
    """Parse one ``infer`` payload.

    Raises:
        RequestError: over the size cap, bad JSON (nested too deeply included), bad
            base64, missing image; it carries the response topic and correlation data.
    """
    fallback = correlation_id(correlation_data)

    def refuse(code: str, detail: str, rid: str) -> RequestError:
        return RequestError(
            code, detail, rid, response_topic=response_topic, correlation_data=correlation_data
        )

    if len(payload) > max_bytes:
        raise refuse(
            "too_large",
            f"payload is {len(payload)} bytes; the limit is {max_bytes} "
            "(requests.max_payload_bytes)",
            fallback or payload_id(payload[:max_bytes]),
        )
    request_id = fallback or payload_id(payload)
    image = payload
    if payload[:1] in (b"{", b"[") or payload.lstrip()[:1] == b"{":
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise refuse(
                "bad_json", f"payload looks like JSON but is not valid: {exc}", request_id
            ) from exc
        except RecursionError as exc:  # a 2 kB payload of "[[[[..." nests past the stack
            raise refuse(
                "bad_json", "payload looks like JSON but nests too deeply", request_id
            ) from exc
        if not isinstance(doc, dict):
            raise refuse("bad_json", 'expected a JSON object {"id", "image_b64"}', request_id)
        raw_id = doc.get("id")
        if raw_id is not None:
            if (
                not isinstance(raw_id, (str, int))
                or isinstance(raw_id, bool)
                or len(str(raw_id)) > MAX_ID_LENGTH
            ):
                raise refuse(
                    "bad_json",
                    f'"id" must be a string of at most {MAX_ID_LENGTH} characters',
                    request_id,
                )
            request_id = str(raw_id)
        b64 = doc.get("image_b64")
        if not isinstance(b64, str) or not b64:
            raise refuse("bad_json", 'missing "image_b64" (the image as base64 text)', request_id)
        try:
            image = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise refuse(
                "bad_base64", f'"image_b64" is not valid base64: {exc}', request_id
            ) from exc
        if not image:
            raise refuse("bad_base64", '"image_b64" decodes to no bytes', request_id)
    return Request(request_id, image, "mqtt", response_topic, correlation_data)
