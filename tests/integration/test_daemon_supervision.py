"""A daemon that never goes deaf and never hangs unnoticed: hostile payloads, workers that
die or stall (injected with ``EDGE_RUNTIME_FAULT``), requests that crash the process."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time

import pytest
from support.client import TestClient
from support.daemon import DaemonProcess, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"


def request(rid: str, img: bytes) -> bytes:
    return json.dumps({"id": rid, "image_b64": base64.b64encode(img).decode()}).encode()


def answers(client: TestClient) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for m in client.on(f"{T}/predictions") + client.on(f"{T}/errors"):
        doc = m.json()
        out[doc["id"]] = doc  # type: ignore[index]
    return out


def wait_answered(client: TestClient, ids: set[str], timeout: float) -> dict[str, dict]:
    client.wait_for(lambda r: ids <= set(answers(client)), timeout)
    return answers(client)


@pytest.mark.parametrize(
    "payload",
    [b"[" * 1000 + b"]" * 1000, b'{"a":' * 50_000],
    ids=["nested-arrays", "nested-objects"],
)
def test_deeply_nested_json_gets_bad_json_and_the_daemon_keeps_answering(tmp_path, payload):
    img, _ = digits(1)[0]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port)
        with DaemonProcess(config) as daemon:
            client = TestClient(broker.port)
            client.subscribe(f"{T}/predictions")
            client.subscribe(f"{T}/errors")
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            client.publish(f"{T}/infer", payload, correlation=b"nested")
            got = wait_answered(client, {"nested"}, 15)
            assert got.get("nested", {}).get("error") == "bad_json", (got, daemon.log())
            client.publish(f"{T}/infer", request("good-1", img))
            got = wait_answered(client, {"good-1"}, 15)
            assert "top" in got.get("good-1", {}), (got, daemon.log())
            client.close()
            assert daemon.terminate() == 0, daemon.log()
            assert "Traceback" not in daemon.log()
