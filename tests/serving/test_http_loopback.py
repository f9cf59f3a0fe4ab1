"""Which listen addresses count as this machine's loopback (no token needed): literal
loopback addresses, and ``localhost`` only while it resolves to loopback addresses alone.
A name is not taken on trust: ``/etc/hosts`` may map ``localhost`` elsewhere, and the
server would then listen there without a token."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from edge_runtime.daemon.config import parse_config
from edge_runtime.errors import ConfigError

BASE = {"device_id": "pi-test", "state_dir": "/tmp/x", "model": {"path": "m.tflite"}}


def _http(listen: str) -> dict[str, object]:
    return {**BASE, "http": {"enabled": True, "listen": listen}}


def _resolving(monkeypatch: pytest.MonkeyPatch, name: str, *addresses: str) -> None:
    """``name`` resolves to ``addresses`` (a hosts file this test cannot edit)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != name:
            return real(host, *args, **kwargs)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("listen", ["127.0.0.1:8501", "127.8.9.10:8501", "[::1]:8501"])
def test_literal_loopback_addresses_need_no_token(listen):
    assert parse_config(_http(listen)).http.loopback


def test_localhost_resolving_to_loopback_needs_no_token(monkeypatch):
    _resolving(monkeypatch, "localhost", "127.0.0.1", "::1")
    assert parse_config(_http("localhost:8501")).http.loopback


@pytest.mark.parametrize("addresses", [("192.0.2.7",), ("127.0.0.1", "192.0.2.7"), ()])
def test_localhost_resolving_elsewhere_or_not_at_all_needs_the_token(monkeypatch, addresses):
    _resolving(monkeypatch, "localhost", *addresses)
    with pytest.raises(ConfigError, match="token_file"):
        parse_config(_http("localhost:8501"))


def test_other_host_names_need_the_token_whatever_they_resolve_to(monkeypatch):
    _resolving(monkeypatch, "loop.lan", "127.0.0.1")
    with pytest.raises(ConfigError, match="token_file"):
        parse_config(_http("loop.lan:8501"))
