"""Plain values for one HTTP exchange, and the mapping of request error codes to HTTP
statuses (the contract's: 400 bad input, 401 token, 404 model, 413 too large, 429 queue
full, 503 not ready or stopping)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"

#: Request error codes that are not the client's input being wrong.
STATUS_BY_CODE = {
    "unauthorized": 401,
    "model_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "length_required": 411,
    "too_large": 413,
    "queue_full": 429,
    "internal_error": 500,
    "inference_failed": 500,
    "not_ready": 503,
    "shutting_down": 503,
    "timeout": 503,
}


def status_for(code: str) -> int:
    """The HTTP status of an error ``code``: 400 (bad input) unless listed."""
    return STATUS_BY_CODE.get(code, 400)


class HttpError(Exception):
    """A request answered with an error: ``{"error": code, "detail": detail}``."""

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status_for(code) if status is None else status


@dataclass(frozen=True)
class HttpRequest:
    """A request as read: ``path`` without the query, percent-encoding kept; header
    names in lower case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = field(default=())


def json_response(doc: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, json.dumps(doc, separators=(",", ":")).encode("utf-8"))


def error_response(error: HttpError) -> HttpResponse:
    headers: tuple[tuple[str, str], ...] = ()
    if error.status == 401:
        headers = (("WWW-Authenticate", 'Bearer realm="edge-runtime"'),)
    elif error.status in (429, 503):
        headers = (("Retry-After", "1"),)
    doc = {"error": error.code, "detail": error.detail}
    return HttpResponse(
        error.status, json.dumps(doc, separators=(",", ":")).encode("utf-8"), headers=headers
    )


#: Digits of a length beyond which it is over any body cap (and int() would refuse it).
MAX_DIGITS = 18


def parse_length(text: str) -> int:
    """A length field's value (ASCII digits, surrounding white space allowed); -1 when it
    is not one. A length of more than ``MAX_DIGITS`` digits counts as ``10**MAX_DIGITS``:
    over any cap."""
    digits = text.strip()
    if not digits or not digits.isascii() or not digits.isdigit():
        return -1
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else 10**MAX_DIGITS


def parse_json(body: bytes) -> Any:
    """A request body as JSON.

    Raises:
        HttpError: bad_json.
    """
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError("bad_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise HttpError("bad_json", "the body's JSON nests too deeply") from exc
