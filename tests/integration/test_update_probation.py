"""Probation after an update, with a real mosquitto and the daemon as a real process:
a model that passes validation but fails the health gate is rolled back by itself, a
healthy one is reported healthy, a model the daemon crash-loops on is rolled back at
start-up, and a bundle rolled back once is not taken again from its retained notice."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.inference.engine import Engine
from edge_runtime.update.service import build_notice
from tests.conftest import MODELS
from tests.integration.test_update_mqtt import (
    DIGIT,
    events,
    fleet,  # noqa: F401 - the module's broker, keys and v1
    make_bundle,
    start_device,
)
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.integration
SLOW = MODELS / "slow_int8.tflite"


def slow_bundle(folder: Path, version: str, key: Any) -> Path:
    """The digits bundle with the slow model inside and golden vectors measured for it:
    it passes validation, and serves each request some thirty times slower (preprocessing
    included), far past the gate's 4x."""
    with tarfile.open(MODELS / "digits_v1.edgebundle") as tar:
        golden = np.load(io.BytesIO(tar.extractfile("golden.npz").read()))  # type: ignore[union-attr]
        inputs = golden["inputs"]
    engine = Engine.load(SLOW, delegate="cpu")
    outputs = np.stack([engine.run([inputs[i : i + 1]])[0][0] for i in range(len(inputs))])
    engine.close()
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=inputs, output_0=outputs)
    return make_bundle(
        folder,
        version,
        key,
        _files={"model.tflite": SLOW.read_bytes(), "golden.npz": buf.getvalue()},
    )


def stream(client: TestClient, device: str, prefix: str, n: int) -> list[dict[str, Any]]:
    """Send ``n`` requests at once; their answers, once all came."""
    payload = base64.b64encode(DIGIT).decode()
    ids = {f"{prefix}{i}" for i in range(n)}
    for rid in sorted(ids):
        client.publish(
            f"edge/{device}/infer",
            json.dumps({"id": rid, "image_b64": payload}).encode(),
            wait=False,
        )
    topic = f"edge/{device}/predictions"

    def answers(received: list) -> list[dict[str, Any]]:
        docs = (json.loads(m.payload) for m in received if m.topic == topic)
        return [d for d in docs if d["id"] in ids]

    client.wait_for(lambda r: {d["id"] for d in answers(r)} >= ids, 60)
    return answers(client.received)


def wait_stage(client: TestClient, device: str, version: str, stage: str, timeout: float = 60):
    def seen(_: object) -> bool:
        return any(e["version"] == version and e["stage"] == stage for e in events(client, device))

    client.wait_for(seen, timeout)
    found = [e for e in events(client, device) if e["version"] == version and e["stage"] == stage]
    assert found, f"no {stage} event for {version} in {timeout} s: {events(client, device)}"
    return found[0]


def announce(client: TestClient, device: str, bundle: Path) -> None:
    notice = build_notice(bundle, bundle.as_uri())
    client.client.publish(
        f"edge/{device}/model/update", json.dumps(notice), qos=1, retain=True
    ).wait_for_publish(10)


def state(client: TestClient, device: str) -> dict[str, Any]:
    return json.loads(client.on(f"edge/{device}/model/state")[-1].payload)


def test_a_slow_model_fails_the_health_gate_and_is_rolled_back(fleet: dict[str, Any]) -> None:  # noqa: F811
    device = "gate-1"
    daemon = start_device(fleet, device, probation_requests=20)
    client = TestClient(fleet["broker"].port)
    try:
        client.subscribe(f"edge/{device}/#")
        stream(client, device, "v1-", 30)  # the baseline: v1's service times
        good = make_bundle(fleet["root"], "2.0.0", fleet["key"])
        announce(client, device, good)
        assert wait_stage(client, device, "2.0.0", "applied")
        assert state(client, device)["last_update"]["health"] == "probation"
        answers = stream(client, device, "v2-", 30)
        assert {a["model"]["version"] for a in answers} == {"2.0.0"}
        healthy = wait_stage(client, device, "2.0.0", "healthy", 20)
        served = int(healthy["detail"].split()[0])
        assert served >= 20 and healthy["detail"].endswith("requests served, 0 failed"), healthy
        assert state(client, device)["last_update"]["health"] == "passed"

        slow = slow_bundle(fleet["root"], "3.0.0", fleet["key"])
        announce(client, device, slow)
        assert wait_stage(client, device, "3.0.0", "applied")  # validation passed
        stream(client, device, "v3-", 30)
        back = wait_stage(client, device, "3.0.0", "rolled_back", 30)
        assert back["reason"] == "health", back
        assert "p90 service time" in back["detail"] and "now serving 2.0.0" in back["detail"]
        assert "healthy" not in [
            e["stage"] for e in events(client, device) if e["version"] == "3.0.0"
        ]
        after = stream(client, device, "after-", 5)
        assert {a["model"]["version"] for a in after} == {"2.0.0"}
        now = state(client, device)
        assert now["active"]["version"] == "2.0.0" and now["previous"]["version"] == "3.0.0"
        assert (now["last_update"]["result"], now["last_update"]["reason"]) == (
            "rolled_back",
            "health",
        )

        # a restart serves 2.0.0, and the retained notice of 3.0.0 is not taken again
        assert daemon.terminate() == 0
        before = len(events(client, device))
        daemon = DaemonProcess(daemon.config)
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        assert {a["model"]["version"] for a in stream(client, device, "restart-", 5)} == {"2.0.0"}
        time.sleep(1.0)
        assert events(client, device)[before:] == [], events(client, device)[before:]
        assert "was refused or rolled back before" in daemon.log()
    finally:
        client.client.publish(f"edge/{device}/model/update", b"", qos=1, retain=True)
        client.close()
        daemon.kill()


def test_a_model_the_daemon_crash_loops_on_is_rolled_back_at_start(
    fleet: dict[str, Any],  # noqa: F811
) -> None:
    device = "loop-1"
    daemon = start_device(fleet, device, probation_requests=1000, crash_loop_starts=3)
    client = TestClient(fleet["broker"].port)
    try:
        client.subscribe(f"edge/{device}/#")
        v2 = make_bundle(fleet["root"], "2.0.0", fleet["key"])
        announce(client, device, v2)
        assert wait_stage(client, device, "2.0.0", "applied")
        assert stream(client, device, "a-", 3)[0]["model"]["version"] == "2.0.0"
        # three processes on 2.0.0 end without a clean stop (a clean one in between
        # does not count); the fourth start goes back to 1.0.0
        for end in ("kill", "terminate", "kill", "kill"):
            if end == "kill":
                daemon.kill()
            else:
                assert daemon.terminate() == 0
            daemon = DaemonProcess(daemon.config)
            assert daemon.wait_log("daemon ready", 30), daemon.log()
        back = wait_stage(client, device, "2.0.0", "rolled_back", 20)
        assert back["reason"] == "crash_loop", back
        assert "3 starts on 2.0.0 ended without a clean stop" in back["detail"]
        assert {a["model"]["version"] for a in stream(client, device, "b-", 5)} == {"1.0.0"}
        now = state(client, device)
        assert now["active"]["version"] == "1.0.0"
        assert (now["last_update"]["result"], now["last_update"]["reason"]) == (
            "rolled_back",
            "crash_loop",
        )
        assert "rolling back" in daemon.log()
        # and the retained notice of 2.0.0 does not bring it back
        time.sleep(1.0)
        assert {a["model"]["version"] for a in stream(client, device, "c-", 3)} == {"1.0.0"}
    finally:
        client.client.publish(f"edge/{device}/model/update", b"", qos=1, retain=True)
        client.close()
        daemon.kill()
