"""``model/state`` survives a restart of the daemon (a real process, a real mosquitto):
the same active, previous and last update are published again, and the retained notices
of refused versions that come back are neither fetched nor reported again."""

from __future__ import annotations

import json
import stat
import time
from typing import Any

import pytest

from edge_runtime.trust.keys import generate_signing_key
from edge_runtime.update.service import build_notice
from tests.integration.test_update_mqtt import (
    ask,
    events,
    fleet,  # noqa: F401 - the module's broker, keys and v1
    make_bundle,
    start_device,
    wait_result,
)
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.integration


def retain(client: TestClient, topic: str, notice: dict[str, Any] | None) -> None:
    payload = b"" if notice is None else json.dumps(notice).encode()
    client.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)


def test_model_state_and_refusals_survive_a_restart(fleet: dict[str, Any]) -> None:  # noqa: F811
    root, key = fleet["root"], fleet["key"]
    device = "remembers"
    groups = [f"persist-{time.monotonic_ns()}", f"persist-old-{time.monotonic_ns()}"]
    topics = [f"edge/groups/{g}/model/update" for g in groups] + [f"edge/{device}/model/update"]
    daemon = start_device(fleet, device, groups=groups)
    client = TestClient(fleet["broker"].port)
    try:
        client.subscribe(f"edge/{device}/#")
        stranger = make_bundle(root, "10.5.0", generate_signing_key())
        retain(client, topics[0], build_notice(stranger, stranger.as_uri()))
        result = wait_result(client, device, "10.5.0")
        assert (result["stage"], result["reason"]) == ("rejected", "signature"), result
        v10 = make_bundle(root, "10.0.0", key)
        retain(client, topics[2], build_notice(v10, v10.as_uri()))
        assert wait_result(client, device, "10.0.0")["stage"] == "applied"
        old = make_bundle(root, "0.5.0", key)
        retain(client, topics[1], build_notice(old, old.as_uri()))
        result = wait_result(client, device, "0.5.0")
        assert (result["stage"], result["reason"]) == ("rejected", "rollback"), result
        assert "downloading" not in [
            e["stage"] for e in events(client, device) if e["version"] == "0.5.0"
        ]
        state_topic = f"edge/{device}/model/state"
        before = json.loads(client.on(state_topic)[-1].payload)
        assert before["previous"]["version"] == "1.0.0", before
        assert (before["last_update"]["version"], before["last_update"]["result"]) == (
            "10.0.0",
            "applied",
        )
        saved = daemon.config.parent / "state" / "model-state.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600

        assert daemon.terminate() == 0
        heard, seen = len(client.on(state_topic)), len(events(client, device))
        daemon = DaemonProcess(daemon.config)
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        client.wait_for(lambda _: len(client.on(state_topic)) > heard, 20)
        assert ask(client, device, "after-restart")["model"]["version"] == "10.0.0"
        time.sleep(1.0)  # the retained notices are back by now
        after = [json.loads(m.payload) for m in client.on(state_topic)[heard:]]
        assert after and all(doc == before for doc in after), (before, after)
        assert events(client, device)[seen:] == [], events(client, device)[seen:]
    finally:
        for topic in topics:
            retain(client, topic, None)
        client.close()
        daemon.kill()
