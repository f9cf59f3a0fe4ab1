"""One HTTP/1.1 connection's requests, read under the server's limits and answered.

Kept small on purpose: request line, headers (strict, bounded in size and number), a
body only with ``Content-Length``, keep-alive unless the client says ``close``.
"""

from __future__ import annotations

import io
import logging
import socket
from http import HTTPStatus
from typing import Any, Protocol

from edge_runtime.daemon.supervisor import Heartbeat
from edge_runtime.serving.http import (
    HttpError,
    HttpRequest,
    HttpResponse,
    error_response,
    parse_length,
)

log = logging.getLogger(__name__)

#: Longest request line (method, target, version), and longest header line.
MAX_LINE = 8192
#: Most header lines in a request.
MAX_HEADERS = 100
BODY_METHODS = ("POST", "PUT", "PATCH")


class Owner(Protocol):
    """What a connection needs from its server."""

    max_body_bytes: int

    @property
    def stopping(self) -> bool: ...

    def arm(self, conn: socket.socket, *, reading: bool = True) -> None: ...

    def disarm(self, conn: socket.socket) -> None: ...

    def authorized(self, header: str | None) -> bool: ...

    def handle(self, request: HttpRequest) -> HttpResponse: ...


def serve_connection(conn: socket.socket, owner: Owner, beat: Heartbeat, head: bytes = b"") -> None:
    """Answer requests on ``conn`` until the client closes, asks to close, breaks a
    limit, or the server stops (``head``: what was read of it already)."""
    rfile = io.BufferedReader(_Prefixed(head, conn.makefile("rb", buffering=0)))
    try:
        while not owner.stopping:
            owner.arm(conn)  # the next request must arrive whole in time
            line = rfile.readline(MAX_LINE + 1)
            if not line:
                return
            beat.beat()
            response, keep = _one(line, rfile, conn, owner)
            owner.arm(conn, reading=False)  # a client that does not read it is cut too
            _write(conn, response, keep and not owner.stopping)
            owner.disarm(conn)
            if not keep:
                return
            beat.idle()
    finally:
        rfile.close()


def _one(
    line: bytes, rfile: io.BufferedIOBase, conn: socket.socket, owner: Owner
) -> tuple[HttpResponse, bool]:
    """The response to one request, and whether the connection may carry another."""
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        return _error("bad_request", "request line too long", 414), False
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return _error("bad_request", "not an HTTP/1.x request line"), False
    method, target, version = parts
    try:
        headers, lengths = read_headers(rfile)
    except BadHeaders as exc:
        return _error("bad_request", exc.detail, exc.status), False
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if not owner.authorized(headers.get("authorization")):
        return _error("unauthorized", "send Authorization: Bearer <token>"), False
    if headers.get("transfer-encoding"):
        return _error("length_required", "send the body with a Content-Length"), False
    if lengths > 1:
        return _error("bad_request", "more than one Content-Length"), False
    length_text = headers.get("content-length")
    if length_text is None and method in BODY_METHODS:
        return _error("length_required", "a Content-Length is required"), False
    length = 0
    if length_text is not None:
        length = parse_length(length_text)
        if length < 0:
            return _error("bad_request", f"Content-Length {length_text!r} is not a length"), False
    if length > owner.max_body_bytes:
        return (
            _error(
                "too_large",
                f"the body is {(length_text or '').strip()[:24]} bytes; the limit is "
                f"{owner.max_body_bytes} (http.max_body_bytes)",
            ),
            False,
        )
    expect = headers.get("expect", "").lower()
    if expect == "100-continue" and length:  # curl waits a second for it otherwise
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    elif expect and expect != "100-continue":
        return _error("bad_request", f"Expect: {expect!r} is not understood", 417), False
    body = rfile.read(length) if length else b""
    if len(body) != length:
        return _error("bad_request", "the body ended early"), False
    owner.disarm(conn)  # read whole: answering may take as long as the pipeline needs
    path = target.split("?", 1)[0]
    return owner.handle(HttpRequest(method, path, headers, body)), keep


class BadHeaders(Exception):
    """The header block cannot be read: ``status`` 400 or 431 (too large)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def read_headers(rfile: io.BufferedIOBase) -> tuple[dict[str, str], int]:
    """The header fields up to the blank line (names in lower case; of a repeated field
    the first) and how many ``Content-Length`` fields there were. Strict: no white space
    before a colon, no folded lines (both are request-smuggling material). A sixth of
    the time ``http.client.parse_headers`` takes (3 against 23 us for 7 fields).

    Raises:
        BadHeaders: malformed, a line over ``MAX_LINE``, more than ``MAX_HEADERS``.
    """
    fields: dict[str, str] = {}
    lengths = 0
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return fields, lengths
        if not line:
            raise BadHeaders("the headers ended early")
        if not line.endswith(b"\n"):
            raise BadHeaders(f"a header line is over {MAX_LINE} bytes", 431)
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise BadHeaders(f"malformed header line {line[:60]!r}")
        key = name.lower()
        lengths += key == "content-length"
        fields.setdefault(key, value.strip())
    raise BadHeaders(f"more than {MAX_HEADERS} header lines", 431)


class _Prefixed(io.RawIOBase):
    """``head``, then what ``raw`` reads."""

    def __init__(self, head: bytes, raw: io.RawIOBase) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if not len(self._head):
            return self._raw.readinto(buffer)
        n = min(len(buffer), len(self._head))
        memoryview(buffer).cast("B")[:n] = self._head[:n]
        self._head = self._head[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _error(code: str, detail: str, status: int | None = None) -> HttpResponse:
    return error_response(HttpError(code, detail, status))


def _write(conn: socket.socket, response: HttpResponse, keep: bool) -> None:
    conn.sendall(encode(response, keep))


def encode(response: HttpResponse, keep: bool) -> bytes:
    """``response`` as sent (``keep``: whether the connection stays open)."""
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep else 'close'}",
        *(f"{k}: {v}" for k, v in response.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
