"""The HTTP server: one listening socket, a fixed set of worker threads, hard limits.

The accept thread accepts, does the TLS handshakes and reads each connection's first
request head without blocking (``gate``); a connection whose head has arrived waits in a
bounded queue for a worker (a full queue answers 429 and closes). A worker serves one
connection at a time (keep-alive included). Each request must arrive whole within
``request_timeout`` (the accept thread shuts down a connection past its deadline,
however slowly it trickles) and the connection may stay silent no longer than
``idle_timeout``, so slow or idle clients cannot hold workers. A body needs a
``Content-Length`` (411 without one) no larger than ``max_body_bytes`` (413, unread).
With a token, every request needs ``Authorization: Bearer <token>`` (401, body unread).
Every thread reports to its heartbeat; the owner (the daemon) joins them in ``stop``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import queue
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge_runtime.daemon.config import Config, HttpConfig
from edge_runtime.daemon.pipeline import Pipeline
from edge_runtime.daemon.supervisor import Heartbeat, Heartbeats, unsupervised
from edge_runtime.errors import ConfigError
from edge_runtime.serving.connection import encode, serve_connection
from edge_runtime.serving.gate import MAX_HEAD, HeadGate, head_ends
from edge_runtime.serving.http import HttpError, HttpRequest, HttpResponse, error_response
from edge_runtime.serving.model import ModelService
from edge_runtime.serving.routes import Routes

log = logging.getLogger(__name__)

#: How often the accept thread wakes to enforce deadlines, and on stop.
POLL = 0.2
#: Beyond the request and answer timeouts, how long one request may keep a worker busy
#: (writing the answer) before the worker counts as stuck.
WRITE_BOUND = 30.0


def read_token(path: Path) -> bytes:
    """The bearer token in ``path`` (surrounding white space dropped).

    Raises:
        ConfigError: unreadable or empty.
    """
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"http.token_file: cannot read {path}: {exc.strerror or exc}") from exc
    if not token or any(c < 0x21 or c > 0x7E for c in token):
        raise ConfigError(
            f"http.token_file: {path} must hold one token of printable ASCII characters"
        )
    return token


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Raises:
    ConfigError: the certificate or key does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"http.tls_cert/tls_key: cannot load {cert} and {key}: {exc}") from exc
    return context


class HttpServer:
    def __init__(
        self, config: HttpConfig, routes: Routes, *, heartbeats: Heartbeats = unsupervised
    ) -> None:
        """Listen at once (a busy port fails the start, not a later request).

        Raises:
            ConfigError: the address cannot be listened on; the token or TLS files do not
                load; not loopback and no token.
        """
        self.config = config
        self.routes = routes
        self.max_body_bytes = config.max_body_bytes
        if not config.loopback and config.token_file is None:
            raise ConfigError(f"http.token_file: required to listen on {config.listen}")
        self.token = read_token(config.token_file) if config.token_file is not None else None
        self.tls = (
            tls_context(config.tls_cert, config.tls_key)
            if config.tls_cert is not None and config.tls_key is not None
            else None
        )
        host = config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._sock = socket.create_server(
                (host, config.port), family=family, backlog=config.backlog
            )
        except OSError as exc:
            raise ConfigError(
                f"http.listen: cannot listen on {config.listen}: {exc.strerror or exc}"
            ) from exc
        self.port = int(self._sock.getsockname()[1])
        self._gate = HeadGate(
            self._sock,
            self.tls,
            request_timeout=config.request_timeout,
            idle_timeout=config.idle_timeout,
        )
        self._waiting: queue.Queue[Any] = queue.Queue(maxsize=config.backlog)
        # connections being read (True) or written to (False): (deadline, reading)
        self._deadlines: dict[socket.socket, tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._heartbeats = heartbeats
        bound = config.request_timeout + config.answer_timeout + WRITE_BOUND
        self._threads = [self._thread("http-accept", POLL + 10.0, self._accept_loop)] + [
            self._thread(f"http-{i}", bound, self._worker_loop) for i in range(config.workers)
        ]

    def _thread(self, name: str, bound: float, loop: Any) -> threading.Thread:
        beat = self._heartbeats(name, bound)
        return threading.Thread(target=beat.guard(lambda: loop(beat)), name=name, daemon=True)

    def start(self) -> None:
        for t in self._threads:
            t.start()
        log.warning(
            "HTTP serving on %s://%s:%d (token %s)",
            "https" if self.tls else "http",
            self.config.host,
            self.port,
            "required" if self.token else "not required",
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new requests (503), close the listener, let the requests being
        answered finish, cut connections being read, join every thread (cutting the
        connections still being written to when ``timeout`` is up)."""
        self._stopping.set()
        self.routes.service.stopping.set()
        deadline = time.monotonic() + timeout
        accept, workers = self._threads[0], self._threads[1:]
        if accept.ident is not None:  # it sees the flag within POLL; then nothing is added
            accept.join(max(0.0, deadline - time.monotonic()))
        else:
            self._gate.close()
        _close(self._sock)
        while True:  # connections still waiting for a worker are closed unanswered
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                break
            _close(item[0])
        self._cut_all(writing=False)  # workers see the flag within POLL once theirs ends
        for t in workers:
            if t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        self._cut_all(writing=True)

    # -- the accept thread ----------------------------------------------------------------
    def _accept_loop(self, beat: Heartbeat) -> None:
        try:
            while not self._stopping.is_set():
                beat.idle()
                for conn, addr, head in self._gate.poll(POLL):
                    beat.beat()
                    if len(head) >= MAX_HEAD and not head_ends(head):
                        self._refuse(conn, f"the request's head is over {MAX_HEAD} bytes", 431)
                        continue
                    try:
                        self._waiting.put_nowait((conn, addr, head))
                    except queue.Full:
                        log.warning("HTTP: every worker is busy; connection refused")
                        self._refuse(conn, "every HTTP worker is busy", 429)
                self._enforce_deadlines()
        finally:
            self._gate.close()

    def _refuse(self, conn: socket.socket, detail: str, status: int) -> None:
        """Answer 429 (``queue_full``) or 431 (``bad_request``) and close, without
        waiting: a client that does not read it is just closed."""
        code = "queue_full" if status == 429 else "bad_request"
        answer = encode(error_response(HttpError(code, detail, status)), keep=False)
        try:
            conn.setblocking(False)
            conn.send(answer)
        except OSError:
            pass
        _close(conn)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [c for c, (d, _) in self._deadlines.items() if d < now]
            for conn in late:
                del self._deadlines[conn]
        for conn in late:
            log.info("HTTP: a client took too long to send its request or read its answer; cut")
            _shutdown(conn)

    def _cut_all(self, *, writing: bool) -> None:
        """Cut the connections being read (and, ``writing``, those being written to)."""
        with self._lock:
            cut = [c for c, (_, reading) in self._deadlines.items() if reading or writing]
            for conn in cut:
                del self._deadlines[conn]
        for conn in cut:
            _shutdown(conn)

    # -- deadlines, for the connection -------------------------------------------------------
    def arm(self, conn: socket.socket, *, reading: bool = True) -> None:
        """``conn`` is being read (or, not ``reading``, written to): cut it unless
        disarmed within ``request_timeout``. Once the server stops, a connection about
        to be read is cut at once; an answer still goes out."""
        if reading and self._stopping.is_set():
            _shutdown(conn)
            return
        with self._lock:
            self._deadlines[conn] = (time.monotonic() + self.config.request_timeout, reading)

    def disarm(self, conn: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def handle(self, request: HttpRequest) -> HttpResponse:
        return self.routes.handle(request)

    def authorized(self, header: str | None) -> bool:
        """``Authorization`` carries the token (always, when none is configured)."""
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token
        )

    # -- the workers --------------------------------------------------------------------
    def _worker_loop(self, beat: Heartbeat) -> None:
        while True:
            beat.idle()
            try:
                conn, addr, head = self._waiting.get(timeout=POLL)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            try:
                conn.settimeout(self.config.idle_timeout)
                serve_connection(conn, self, beat, head)
            except (OSError, ssl.SSLError) as exc:
                log.debug("HTTP connection from %s ended: %s", addr, exc)
            except Exception:  # noqa: BLE001 - one connection must not end a worker
                log.exception("HTTP connection from %s failed", addr)
            finally:
                self.disarm(conn)
                _close(conn)


def _shutdown(conn: socket.socket) -> None:
    """Wake a worker blocked reading ``conn``: its read returns, the connection ends.

    The TCP socket's own shutdown, also under TLS: ``SSLSocket.shutdown`` drops the TLS
    layer before it shuts the socket, and a worker writing to the connection in between
    would write its answer in the clear."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(conn, socket.SHUT_RDWR)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()


def build_server(
    config: Config,
    pipeline: Pipeline,
    *,
    metrics: Callable[[], str],
    refused: Callable[[], None],
    heartbeats: Heartbeats = unsupervised,
) -> HttpServer:
    """The daemon's HTTP server over its ``pipeline`` (``metrics``: the Prometheus text;
    ``refused``: counts a request refused for a full queue).

    Raises:
        ConfigError: see ``HttpServer``.
    """
    service = ModelService(
        pipeline,
        model_name=config.http.model_name,
        queue_wait=config.http.queue_wait,
        answer_timeout=config.http.answer_timeout,
        max_image_bytes=config.requests.max_payload_bytes,
        refused=refused,
    )
    return HttpServer(config.http, Routes(service, metrics), heartbeats=heartbeats)


def config_problems(config: HttpConfig) -> list[str]:
    """What would stop the HTTP server at start, for ``run --check``: an unreadable or
    empty token file, TLS files that do not load (one line each)."""
    if not config.enabled:
        return []
    problems = []
    if config.token_file is not None:
        try:
            read_token(config.token_file)
        except ConfigError as exc:
            problems.append(str(exc))
    if config.tls_cert is not None and config.tls_key is not None:
        try:
            tls_context(config.tls_cert, config.tls_key)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems
