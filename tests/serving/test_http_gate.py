"""The accept thread's gate (serving/gate.py) on real loopback sockets."""

from __future__ import annotations

import socket
import time

from edge_runtime.serving import gate
from edge_runtime.serving.gate import HeadGate


def _poll_until(head_gate: HeadGate, done, rounds: int = 50) -> list:
    ready: list = []
    for _ in range(rounds):
        ready += head_gate.poll(0.05)
        if done(ready):
            break
    return ready


def test_a_connection_pushed_out_while_it_sends_is_dropped_once(monkeypatch) -> None:
    """The oldest waiting connection is pushed out by a new one in the same poll that
    finds it readable: its event is passed over, not read from a closed socket (which
    dropped it a second time and raised KeyError out of the accept thread)."""
    monkeypatch.setattr(gate, "MAX_PENDING", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    head_gate = HeadGate(listener, None, request_timeout=10.0, idle_timeout=10.0)
    port = listener.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))
    second = third = None
    try:
        assert head_gate.poll(1.0) == []  # accepts the first (already queued)
        # both ready before the next poll: the listener (a new connection), then the first
        second = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.05)
        first.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.05)
        head_gate.poll(0.5)  # raised KeyError
        third = socket.create_connection(("127.0.0.1", port))  # the gate still works
        third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        ready = _poll_until(head_gate, lambda r: len(r) == 1)
        assert [head for _, _, head in ready] == [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
        for conn, _, _ in ready:
            conn.close()
    finally:
        head_gate.close()
        listener.close()
        for s in (first, second, third):
            if s is not None:
                s.close()
