"""Downloads that resume: a connection cut mid-body is resumed with a Range request, a
server that ignores ranges starts the download over, what a failed download received is
kept and resumed by the next call, and a cut that brings nothing new ends the download."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.errors import IntegrityError
from edge_runtime.update.fetch import DownloadError, DownloadTimeout, TruncatedDownload, fetch
from tests.support.mosquitto import TlsFiles, make_tls

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


class FlakyServer:
    """Serves DATA over HTTP on 127.0.0.1. The first ``cuts`` responses stop after
    ``cut_after`` body bytes and drop the connection; ``ranges`` says whether a
    ``Range: bytes=N-`` request gets a 206 from N or the whole file again."""

    def __init__(
        self, *, cuts: int, cut_after: int, ranges: bool = True, tls: TlsFiles | None = None
    ) -> None:
        self.cuts, self.cut_after, self.ranges = cuts, cut_after, ranges
        self.requests: list[str | None] = []  # the Range header of each request
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                asked = self.headers.get("Range")
                outer.requests.append(asked)
                start = 0
                if asked and outer.ranges:
                    start = int(asked.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
                else:
                    self.send_response(200)
                body = DATA[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if len(outer.requests) <= outer.cuts:
                    self.wfile.write(body[: outer.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/bundle"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory() -> Iterator:
    servers: list[FlakyServer] = []

    def make(**kw: object) -> FlakyServer:
        servers.append(FlakyServer(**kw))  # type: ignore[arg-type]
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def get(url: str, dest: Path, **kw: object) -> Path:
    args: dict = {"size": len(DATA), "sha256": SHA, "max_bytes": 10**7, "timeout": 5.0}
    args.update(kw)
    return fetch(url, dest, **args)


def test_a_cut_connection_is_resumed_with_a_range_request(server_factory, tmp_path) -> None:
    server = server_factory(cuts=3, cut_after=70_000)
    seen: list[int] = []
    out = get(server.url, tmp_path / "b.part", progress=lambda done, total: seen.append(done))
    assert out.read_bytes() == DATA
    assert server.requests == [None, "bytes=70000-", "bytes=140000-", "bytes=210000-"]
    assert seen == sorted(seen) and seen[-1] == len(DATA)


def test_a_server_without_ranges_sends_it_all_again(server_factory, tmp_path) -> None:
    server = server_factory(cuts=1, cut_after=100_000, ranges=False)
    assert get(server.url, tmp_path / "b.part").read_bytes() == DATA
    assert server.requests == [None, "bytes=100000-", None]


def test_a_server_that_cuts_at_the_same_place_ends_the_download(server_factory, tmp_path) -> None:
    server = server_factory(cuts=10, cut_after=100_000, ranges=False)
    with pytest.raises(TruncatedDownload, match="stopped after 100000 of 300000 bytes"):
        get(server.url, tmp_path / "b.part")
    assert len(server.requests) == 3  # first, a range (ignored), from the start again


def test_what_a_failed_download_received_is_resumed_next_time(server_factory, tmp_path) -> None:
    dest = tmp_path / "b.part"
    dest.write_bytes(DATA[:123_456])  # left by a download a restart interrupted
    server = server_factory(cuts=0, cut_after=0)
    assert get(server.url, dest).read_bytes() == DATA
    assert server.requests == ["bytes=123456-"]


def test_a_partial_file_with_other_bytes_fails_the_hash(server_factory, tmp_path) -> None:
    dest = tmp_path / "b.part"
    dest.write_bytes(b"\0" * 1000)
    server = server_factory(cuts=0, cut_after=0)
    with pytest.raises(IntegrityError, match="sha256 differs"):
        get(server.url, dest)


def test_file_urls_resume_by_seeking(tmp_path) -> None:
    src = tmp_path / "bundle"
    src.write_bytes(DATA)
    dest = tmp_path / "b.part"
    dest.write_bytes(DATA[:5000])
    assert get(src.as_uri(), dest).read_bytes() == DATA


def test_a_server_that_never_answers_times_out(tmp_path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/bundle"
        with pytest.raises(DownloadTimeout):
            get(url, tmp_path / "b.part", timeout=0.5)
    finally:
        silent.close()


def test_https_is_verified_against_the_configured_ca(server_factory, tmp_path) -> None:
    tls = make_tls(tmp_path / "tls")
    server = server_factory(cuts=1, cut_after=50_000, tls=tls)
    with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
        get(server.url, tmp_path / "b.part")  # the system's CAs do not know this server
    assert get(server.url, tmp_path / "b.part", ca_file=tls.ca).read_bytes() == DATA
    other = make_tls(tmp_path / "other")
    with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
        get(server.url, tmp_path / "c.part", ca_file=other.ca)
