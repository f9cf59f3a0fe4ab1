"""The HTTP server's limits, in this process over a real pipeline: bodies capped unread,
slow and idle clients cut, the token, 503 while stopping, 429 when busy."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from edge_runtime.daemon.config import parse_config
from edge_runtime.errors import ConfigError
from tests.serving.conftest import serving
from tests.support.images import digits
from tests.support.mosquitto import make_tls

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"

pytestmark = [pytest.mark.integration, pytest.mark.backend]


def url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while True:
            try:
                chunk = conn.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_body_over_the_cap_is_refused_with_413_before_it_is_sent(tmp_path):
    with serving(tmp_path, max_body_bytes=4096) as server:
        # only the headers go out: the answer comes without the server waiting for the body
        answer = raw(
            server, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "too_large"


def test_a_body_without_content_length_is_refused(server):
    answer = raw(
        server, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 411 "), answer
    answer = raw(server, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 "), answer


def test_a_slow_client_is_cut_and_does_not_hold_the_only_worker(tmp_path):
    image = digits(1)[0][0]
    with serving(tmp_path, workers=1, backlog=4, request_timeout=1.0, idle_timeout=5.0) as server:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(b"POST /v1/predict HTTP/1.1\r\n")
        cut = threading.Event()

        def trickle() -> None:  # one header byte every 0.2 s: never idle, never done
            try:
                for _ in range(100):
                    slow.sendall(b"X")
                    time.sleep(0.2)
            except OSError:
                cut.set()

        t = threading.Thread(target=trickle)
        t.start()
        time.sleep(0.3)
        started = time.monotonic()
        answer = requests.post(url(server, "/v1/predict"), data=image, timeout=10)
        waited = time.monotonic() - started
        assert answer.status_code == 200
        t.join(15)
        slow.close()
        assert cut.is_set()  # the trickling client was cut off
        print(f"a request behind a trickling client waited {waited:.2f} s (request_timeout 1 s)")


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_unfinished_request_heads_hold_no_worker(tmp_path, tls):
    """More clients than workers and waiting places connect and send a part of a request
    (or of a TLS handshake), without the token: a client with the token is answered."""
    token = tmp_path / "token"
    token.write_text("t0ken")
    files = make_tls(tmp_path / "tls") if tls else None
    keys = {"tls_cert": str(files.server_cert), "tls_key": str(files.server_key)} if files else {}
    with serving(
        tmp_path,
        workers=1,
        backlog=2,
        request_timeout=30.0,
        idle_timeout=30.0,
        token_file=str(token),
        **keys,
    ) as server:
        stalled = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)
        ]
        for conn in stalled:
            conn.sendall(b"\x16\x03\x01\x02\x00" if tls else b"POST /v1/predict HTTP/1.1\r\n")
        time.sleep(0.5)  # the stalled connections are accepted first
        scheme = "https" if tls else "http"
        answer = requests.get(
            f"{scheme}://127.0.0.1:{server.port}/v2/health/live",
            headers={"Authorization": "Bearer t0ken"},
            verify=str(files.ca) if files else True,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        for conn in stalled:
            conn.close()


def test_an_idle_connection_is_closed_after_idle_timeout(tmp_path):
    with serving(tmp_path, workers=1, idle_timeout=0.5, request_timeout=30.0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            idle.settimeout(10)
            assert idle.recv(1) == b""  # closed by the server, long before 10 s
        assert requests.get(url(server, "/v2/health/live"), timeout=5).status_code == 200


def test_token_is_required_and_checked(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with serving(tmp_path, token_file=str(token)) as server:
        live = url(server, "/v2/health/live")
        assert requests.get(live, timeout=5).status_code == 401
        wrong = requests.get(live, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
        good = {"Authorization": "Bearer s3cret-token"}
        assert requests.get(live, headers=good, timeout=5).status_code == 200
        # a refused request's body is never read
        assert (
            requests.post(url(server, "/v1/predict"), data=b"x" * 100, timeout=5).status_code == 401
        )


def test_listening_off_loopback_needs_a_token_file():
    base = {"device_id": "pi-test", "state_dir": "/tmp/x", "model": {"path": "m.tflite"}}
    with pytest.raises(ConfigError, match="token_file"):
        parse_config({**base, "http": {"enabled": True, "listen": "0.0.0.0:8501"}})
    with pytest.raises(ConfigError, match="token_file"):
        parse_config({**base, "http": {"enabled": True, "listen": "[::]:8501"}})
    ok = parse_config(
        {**base, "http": {"enabled": True, "listen": "0.0.0.0:8501", "token_file": "/t"}}
    )
    assert not ok.http.loopback
    assert parse_config({**base, "http": {"enabled": True}}).http.loopback


def test_http_config_is_strict():
    base = {"device_id": "pi-test", "state_dir": "/tmp/x", "model": {"path": "m.tflite"}}
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                **base,
                "http": {"listn": "x", "workers": 0, "listen": "nohost", "tls_cert": "/c"},
            }
        )
    text = str(info.value)
    for fragment in ("http.listn: unknown key", "http.workers", "http.listen", "tls_key"):
        assert fragment in text


def test_503_while_stopping(server):
    image = digits(1)[0][0]
    session = requests.Session()
    assert session.get(url(server, "/v2/health/ready"), timeout=5).status_code == 200
    server.routes.service.stopping.set()
    ready = session.get(url(server, "/v2/health/ready"), timeout=5)
    assert ready.status_code == 503
    answer = session.post(url(server, "/v1/predict"), data=image, timeout=5)
    assert answer.status_code == 503 and answer.json()["error"] == "shutting_down"


def test_a_request_being_answered_when_the_server_stops_gets_its_answer(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def metrics() -> str:  # a request that is being answered until released
        entered.set()
        release.wait(10)
        return "edge_runtime_up 1\n"

    with serving(tmp_path, metrics=metrics) as server:
        answers: list[requests.Response | Exception] = []

        def get() -> None:
            try:
                answers.append(requests.get(url(server, "/metrics"), timeout=10))
            except requests.RequestException as exc:
                answers.append(exc)

        client = threading.Thread(target=get)
        client.start()
        assert entered.wait(10)
        stopper = threading.Thread(target=server.stop, args=(10,))
        stopper.start()
        while not server.stopping:
            time.sleep(0.01)
        release.set()
        client.join(15)
        stopper.join(15)
        (answer,) = answers
        assert isinstance(answer, requests.Response), answer
        assert answer.status_code == 200
        assert answer.text == "edge_runtime_up 1\n"
        assert answer.headers["Connection"] == "close"


def test_429_when_the_queue_is_full(tmp_path):
    image = digits(1)[0][0]
    with serving(
        tmp_path, model=MODELS / "slow_int8.tflite", queue_size=1, workers=32, queue_wait=0.0
    ) as server:
        codes: list[int] = []
        lock = threading.Lock()

        def one() -> None:
            r = requests.post(url(server, "/v1/predict"), data=image, timeout=30)
            with lock:
                codes.append(r.status_code)
                if r.status_code == 429:
                    assert r.json()["error"] == "queue_full"
                    assert r.headers["Retry-After"] == "1"

        threads = [threading.Thread(target=one) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert set(codes) == {200, 429}, codes


def test_tls_when_configured_and_the_token_over_it(tmp_path):
    tls = make_tls(tmp_path / "tls")
    token = tmp_path / "token"
    token.write_text("t0ken")
    with serving(
        tmp_path, tls_cert=str(tls.server_cert), tls_key=str(tls.server_key), token_file=str(token)
    ) as server:
        https = f"https://127.0.0.1:{server.port}/v2/health/ready"
        good = {"Authorization": "Bearer t0ken"}
        assert requests.get(https, headers=good, verify=str(tls.ca), timeout=5).status_code == 200
        assert requests.get(https, verify=str(tls.ca), timeout=5).status_code == 401
        with pytest.raises(requests.ConnectionError):  # no plain HTTP on a TLS port
            requests.get(f"http://127.0.0.1:{server.port}/v2/health/ready", timeout=5)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Content-Length : 5\r\n", 400),  # white space before the colon
        (b"X-A: 1\r\n folded\r\n", 400),  # an obsolete folded line
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: 5, 5\r\n", 400),
        (b"Content-Length: -5\r\n", 400),
        ("Content-Length: \u00b2\r\n".encode("latin-1"), 400),  # a digit, but not 0-9
        (b"Content-Length: " + b"1" * 5000 + b"\r\n", 413),  # beyond int()'s 4300 digits
        (b"X-Long: " + b"a" * 9000 + b"\r\n", 431),
        (b"".join(b"X-%d: 1\r\n" % i for i in range(101)), 431),
    ],
)
def test_malformed_or_oversized_headers_are_refused_and_the_connection_closed(
    server, headers, status
):
    answer = raw(server, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\nhello")
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert b"Connection: close" in answer


def test_a_head_over_64_kib_is_refused_before_it_is_whole(server):
    """Nine header lines within the line limit, and the head never ends: refused, with no
    worker waiting for the rest."""
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(9))
    answer = raw(server, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + lines)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "bad_request"


def test_expect_100_continue_is_answered_before_the_body_is_sent(server):
    """curl sends ``Expect: 100-continue`` with bodies over 1 KiB and waits a second for
    the interim answer before it sends the body."""
    image = digits(1)[0][0]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(image)
        )
        assert conn.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(image)
        answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
