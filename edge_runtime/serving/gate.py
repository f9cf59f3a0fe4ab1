"""Where new connections wait, in the accept thread, until their first request's head
has arrived whole (and, with TLS, their handshake is done).

A worker serves one connection at a time, so a client that connects and sends nothing,
or trickles its headers or its TLS handshake, must not get one: before the first
request's head is read nobody has shown the token. Here such a client costs a socket and
at most ``MAX_HEAD`` bytes, among at most ``MAX_PENDING`` waiting connections (a new one
beyond it pushes out the one waiting longest); it is closed when it stays silent for
``idle_timeout`` or has not sent its head within ``request_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: The most a first request's head may take (a longer one is refused as too large).
MAX_HEAD = 64 * 1024
#: Connections waiting for their head at once.
MAX_PENDING = 256
#: After a failed accept (out of file descriptors, ...), how long to wait before the next.
ACCEPT_PAUSE = 0.2


@dataclass
class _Pending:
    conn: socket.socket
    addr: Any
    deadline: float  # the head must be whole by then
    quiet_until: float  # and the client silent no longer than this
    handshaking: bool
    head: bytearray = field(default_factory=bytearray)


class HeadGate:
    def __init__(
        self,
        listener: socket.socket,
        tls: ssl.SSLContext | None,
        *,
        request_timeout: float,
        idle_timeout: float,
    ) -> None:
        """Owned by the accept thread: ``poll`` and ``close`` from it only."""
        self._listener = listener
        self._tls = tls
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        self._pending: dict[socket.socket, _Pending] = {}  # oldest first
        listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)

    def poll(self, timeout: float) -> list[tuple[socket.socket, Any, bytes]]:
        """Accept, handshake and read for up to ``timeout`` s; the connections whose
        first head has arrived (blocking again), with what was read of them: the whole
        head, unless it is ``MAX_HEAD`` bytes long and has not ended."""
        ready = []
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._accept()
                continue
            pending: _Pending = key.data
            if pending.conn not in self._pending:  # pushed out by an accept just now
                continue
            if self._read(pending):
                self._forget(pending.conn)
                pending.conn.setblocking(True)
                ready.append((pending.conn, pending.addr, bytes(pending.head)))
        self._expire()
        return ready

    def close(self) -> None:
        """Close every waiting connection and stop watching the listener."""
        for conn in list(self._pending):
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._selector.close()

    def _accept(self) -> None:
        try:
            conn, addr = self._listener.accept()
        except (BlockingIOError, socket.timeout):
            return
        except OSError as exc:
            log.warning("HTTP accept failed: %s", exc)
            if self._pending:  # out of descriptors, most likely: free one
                self._drop(next(iter(self._pending)))
            time.sleep(ACCEPT_PAUSE)
            return
        if len(self._pending) >= MAX_PENDING:
            log.info("HTTP: %d connections wait for their request; the oldest is cut", MAX_PENDING)
            self._drop(next(iter(self._pending)))
        conn.setblocking(False)
        handshaking = self._tls is not None
        if self._tls is not None:
            try:
                conn = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                log.debug("HTTP connection from %s ended: %s", addr, exc)
                _close(conn)
                return
        now = time.monotonic()
        pending = _Pending(
            conn, addr, now + self._request_timeout, now + self._idle_timeout, handshaking
        )
        self._pending[conn] = pending
        self._selector.register(conn, selectors.EVENT_READ, pending)

    def _read(self, pending: _Pending) -> bool:
        """Whether the head is whole (or ``MAX_HEAD`` long); a closed or broken
        connection is dropped."""
        conn = pending.conn
        try:
            if pending.handshaking:
                assert isinstance(conn, ssl.SSLSocket)
                conn.do_handshake()
                pending.handshaking = False
            while True:
                before = len(pending.head)
                chunk = conn.recv(MAX_HEAD - before)
                if not chunk:
                    self._drop(conn)
                    return False
                pending.head += chunk
                pending.quiet_until = time.monotonic() + self._idle_timeout
                if head_ends(pending.head, before) or len(pending.head) >= MAX_HEAD:
                    return True
                if not (isinstance(conn, ssl.SSLSocket) and conn.pending()):
                    return False
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError as exc:
            log.debug("HTTP connection from %s ended: %s", pending.addr, exc)
            self._drop(conn)
            return False

    def _expire(self) -> None:
        now = time.monotonic()
        late = [c for c, p in self._pending.items() if p.deadline < now or p.quiet_until < now]
        for conn in late:
            log.info("HTTP: a client took too long to send its request; connection cut")
            self._drop(conn)

    def _forget(self, conn: socket.socket) -> None:
        del self._pending[conn]
        self._selector.unregister(conn)

    def _drop(self, conn: socket.socket) -> None:
        self._forget(conn)
        _close(conn)


def head_ends(head: bytes | bytearray, before: int = 0) -> bool:
    """``head`` holds the blank line that ends a request's head (looked for only where
    the bytes added after ``before`` could complete it)."""
    start = max(0, before - 2)
    return head.find(b"\n\r\n", start) >= 0 or head.find(b"\n\n", start) >= 0


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()
