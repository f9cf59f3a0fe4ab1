"""A TLS connection the server cuts (a request past its deadline) keeps its TLS layer to
the end: what a worker writes to it at that moment is encrypted or not sent at all."""

from __future__ import annotations

import contextlib
import socket
import ssl

import pytest

from tests.serving.conftest import serving
from tests.support.mosquitto import make_tls

pytestmark = [pytest.mark.integration, pytest.mark.backend]

LATE = b"a late answer that must never be seen in the clear"


def test_a_tls_connection_cut_by_the_server_never_carries_plaintext(tmp_path, monkeypatch):
    tls = make_tls(tmp_path / "tls")
    cuts = []
    shutdown = socket.socket.shutdown

    def late_write_then_shutdown(self: socket.socket, how: int) -> None:
        """The socket's shutdown, with a worker's write landing just before it (the moment
        a worker may write while another thread cuts the connection)."""
        if isinstance(self, ssl.SSLSocket) and self.server_side:
            cuts.append(how)
            with contextlib.suppress(OSError):
                self.sendall(LATE)
        shutdown(self, how)

    monkeypatch.setattr(socket.socket, "shutdown", late_write_then_shutdown)
    context = ssl.create_default_context(cafile=str(tls.ca))
    with serving(
        tmp_path,
        workers=1,
        request_timeout=0.5,
        idle_timeout=30.0,
        tls_cert=str(tls.server_cert),
        tls_key=str(tls.server_key),
    ) as server:
        plain = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with context.wrap_socket(plain, server_hostname="127.0.0.1") as client:
            # a whole head, a body that never comes: a worker reads it until the deadline
            client.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
            wire = bytearray()
            while True:  # the bytes on the wire, undecrypted, until the server cuts
                try:
                    chunk = socket.socket.recv(client, 65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                wire += chunk
    assert cuts, "the server did not cut the connection with a shutdown"
    assert LATE not in wire
