"""A local HTTP(S) server for download tests, on 127.0.0.1 only.

It serves the files of one folder and can misbehave the ways networks do: cut a response
short (the first ``cuts`` responses after ``cut_after`` bytes, or any request whose query
has ``truncate``, which also ignores ranges), trickle bytes (``trickle`` seconds per
KiB), ignore ``Range`` requests, and, on ``silent_port``, accept connections and never
answer.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from pathlib import Path

from tests.support.mosquitto import TlsFiles


class FileServer:
    def __init__(
        self,
        root: Path,
        *,
        cuts: int = 0,
        cut_after: int = 0,
        ranges: bool = True,
        trickle: float = 0.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.root = root
        self.cuts, self.cut_after, self.ranges, self.trickle = cuts, cut_after, ranges, trickle
        self.requests: list[str | None] = []  # the Range header of each request
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.port = self.httpd.server_address[1]
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(4)  # the kernel accepts; nothing ever answers
        self.silent_port = self.silent.getsockname()[1]

    def url(self, name: str, query: str = "") -> str:
        return f"{self.base}/{name}" + (f"?{query}" if query else "")

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path, _, query = self.path.partition("?")
                data = (server.root / path.strip("/")).read_bytes()
                asked = self.headers.get("Range")
                server.requests.append(asked)
                start = 0
                if asked and server.ranges and "truncate" not in query:
                    start = int(asked.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if "truncate" in query:
                    body = body[: len(body) // 2]
                elif len(server.requests) <= server.cuts:
                    body = body[: server.cut_after]
                try:
                    self._send(body)
                    if len(body) < len(data) - start:
                        self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the client went away (a test killed it mid-download)

            def _send(self, body: bytes) -> None:
                if not server.trickle:
                    self.wfile.write(body)
                    return
                for at in range(0, len(body), 1024):
                    self.wfile.write(body[at : at + 1024])
                    self.wfile.flush()
                    time.sleep(server.trickle)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.silent.close()
