"""Rollback orders are signed: with a real mosquitto and the daemon as a real process,
someone who may publish on ``model/rollback`` but holds no trusted key cannot move the
device's model (unsigned, untrusted, expired, misaddressed, wrongly targeted and replayed
orders are refused with an event), while ``edge-fleet rollback --key`` can, once."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from edge_runtime.trust.keys import SigningKey, generate_signing_key
from edge_runtime.trust.orders import RollbackOrder, sign_order
from edge_runtime.update.service import build_notice
from tests.integration.test_update_mqtt import (
    ask,
    events,
    fleet,  # noqa: F401 - the module's broker, keys and v1
    make_bundle,
    rollback_tool,
    start_device,
    wait_result,
)
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.integration


def order(
    keys: list[SigningKey], device: str, *, version: str | None = None, minutes: float = 10
) -> bytes:
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=minutes)
    doc = sign_order(RollbackOrder(device, version, expires, secrets.token_hex(16)), keys)
    return json.dumps(doc).encode()


def refused_with(client: TestClient, device: str, payload: bytes, reason: str) -> dict[str, Any]:
    seen = len(events(client, device))
    client.publish(f"edge/{device}/model/rollback", payload)
    client.wait_for(lambda _: any(e["reason"] == reason for e in events(client, device)[seen:]), 20)
    found = [e for e in events(client, device)[seen:] if e["reason"] == reason]
    assert found, (reason, events(client, device)[seen:])
    assert found[0]["stage"] == "rejected", found
    return found[0]


def test_only_a_signed_fresh_order_for_this_device_rolls_it_back_once(
    fleet: dict[str, Any],  # noqa: F811
) -> None:
    root, key = fleet["root"], fleet["key"]
    device = "ordered"
    update_topic = f"edge/{device}/model/update"
    daemon = start_device(fleet, device, groups=[f"orders-{time.monotonic_ns()}"])
    client = TestClient(fleet["broker"].port)
    try:
        client.subscribe(f"edge/{device}/#")
        v11 = make_bundle(root, "11.0.0", key)
        notice = json.dumps(build_notice(v11, v11.as_uri()))
        client.client.publish(update_topic, notice, qos=1, retain=True).wait_for_publish(10)
        assert wait_result(client, device, "11.0.0")["stage"] == "applied"

        unsigned = json.dumps({"reason": "operator", "ts": "2026-01-01T00:00:00Z"}).encode()
        detail = refused_with(client, device, unsigned, "rollback_unsigned")["detail"]
        assert "no longer accepted" in detail
        refused_with(client, device, order([generate_signing_key()], device), "rollback_signature")
        refused_with(client, device, order([key], device, minutes=-1), "rollback_expired")
        refused_with(client, device, order([key], "another-device"), "rollback_misaddressed")
        refused_with(client, device, order([key], device, version="0.1.0"), "rollback_target")
        assert ask(client, device, "still-11")["model"]["version"] == "11.0.0"
        state_topic = f"edge/{device}/model/state"
        assert json.loads(client.on(state_topic)[-1].payload)["last_update"]["result"] == "applied"

        done = rollback_tool(fleet, device, "--version", "1.0.0")
        assert done.returncode == 0 and "rolled_back" in done.stdout, done.stdout + done.stderr
        assert ask(client, device, "rolled-back")["model"]["version"] == "1.0.0"
        sent = client.on(f"edge/{device}/model/rollback")[-1].payload
        refused_with(client, device, sent, "rollback_replayed")
        assert ask(client, device, "not-replayed")["model"]["version"] == "1.0.0"
        before = json.loads(client.on(state_topic)[-1].payload)

        # after a restart: the same state, the rolled-back notice not fetched, no replay
        assert daemon.terminate() == 0
        heard, seen = len(client.on(state_topic)), len(events(client, device))
        daemon = DaemonProcess(daemon.config)
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        client.wait_for(lambda _: len(client.on(state_topic)) > heard, 20)
        assert json.loads(client.on(state_topic)[-1].payload) == before
        assert before["previous"]["version"] == "11.0.0"
        assert (before["last_update"]["result"], before["last_update"]["reason"]) == (
            "rolled_back",
            "operator",
        )
        assert ask(client, device, "restarted")["model"]["version"] == "1.0.0"
        assert events(client, device)[seen:] == [], events(client, device)[seen:]
        refused_with(client, device, sent, "rollback_replayed")
        assert ask(client, device, "still-1")["model"]["version"] == "1.0.0"
    finally:
        client.client.publish(update_topic, b"", qos=1, retain=True)
        client.close()
        daemon.kill()
