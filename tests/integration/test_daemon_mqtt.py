"""The daemon as a real process against a real mosquitto: predictions, protocols, TLS, ACL,
status and last will, telemetry, bad requests, the watched folder."""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path

import pytest
from support.client import TestClient
from support.daemon import MODEL, DaemonProcess, daemon_config
from support.images import digits, jpeg
from support.mosquitto import Mosquitto, make_tls

from edge_runtime.inference.engine import Engine

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"


def expected_top(images: list[bytes]) -> list[int]:
    """What the model itself says, in this process (the daemon must agree exactly)."""
    engine = Engine.load(MODEL, threads=1)
    try:
        return [engine.predict(img).top[0].index for img in images]
    finally:
        engine.close()


def answers(client: TestClient, topic: str) -> dict[str, dict]:
    return {m.json()["id"]: m.json() for m in client.on(topic)}  # type: ignore[index]


def wait_ready(daemon: DaemonProcess) -> None:
    assert daemon.wait_log("daemon ready", 30), daemon.log()


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path) as b:
        yield b


@pytest.mark.backend
def test_prediction_mqtt5_echoes_correlation_data_and_uses_response_topic(tmp_path, broker):
    images = digits(12)
    want = expected_top([img for img, _ in images])
    assert sum(w == y for w, (_, y) in zip(want, images)) >= 10  # the model is sane
    with DaemonProcess(daemon_config(tmp_path, broker.port)) as daemon:
        client = TestClient(broker.port)
        client.subscribe(f"{T}/predictions")
        client.subscribe("replies/test")
        wait_ready(daemon)
        for i, (img, _) in enumerate(images):
            client.publish(
                f"{T}/infer", img, correlation=f"corr-{i}".encode(), response_topic="replies/test"
            )
        client.wait_for(lambda r: len(r) >= 2 * len(images), 20)
        preds = client.on(f"{T}/predictions")
        replies = client.on("replies/test")
        assert len(preds) == len(images), daemon.log()
        assert len(replies) == len(images)
        for msg in preds + replies:
            doc = msg.json()
            i = int(doc["id"].split("-")[1])
            assert msg.correlation_data == f"corr-{i}".encode()
            assert doc["device_id"] == DEV
            assert doc["ts"].endswith("Z")
            assert doc["top"][0]["index"] == want[i]
            assert set(doc) >= {"id", "device_id", "ts", "model", "top", "latency_ms"}
            assert doc["model"]["name"] == "digits_int8" and len(doc["model"]["sha256"]) == 64
            assert set(doc["latency_ms"]) == {"preprocess", "invoke", "postprocess"}
        client.close()
        assert daemon.terminate() == 0


def test_mqtt311_with_json_requests(tmp_path, broker):
    images = digits(6)
    want = expected_top([img for img, _ in images])
    config = daemon_config(tmp_path, broker.port, mqtt={"protocol": "3.1.1"})
    with DaemonProcess(config) as daemon:
        client = TestClient(broker.port, protocol="3.1.1")
        client.subscribe(f"{T}/predictions")
        wait_ready(daemon)
        for i, (img, _) in enumerate(images):
            body = json.dumps({"id": f"req-{i}", "image_b64": base64.b64encode(img).decode()})
            client.publish(f"{T}/infer", body.encode())
        client.wait_for(lambda r: len(r) >= len(images), 20)
        got = answers(client, f"{T}/predictions")
        assert sorted(got) == sorted(f"req-{i}" for i in range(len(images))), daemon.log()
        for i in range(len(images)):
            assert got[f"req-{i}"]["top"][0]["index"] == want[i]
        # raw bytes under 3.1.1 get a stable id derived from the payload
        client.publish(f"{T}/infer", images[0][0])
        client.wait_for(lambda r: len(r) >= len(images) + 1, 10)
        ids = [m.json()["id"] for m in client.on(f"{T}/predictions")]
        assert ids[-1].startswith("sha256:")
        client.close()
        assert daemon.terminate() == 0


def test_tls_with_client_certificate(tmp_path):
    tls = make_tls(tmp_path / "pki")
    with Mosquitto(tmp_path, tls=tls) as b:
        config = daemon_config(
            tmp_path,
            b.tls_port,
            mqtt={
                "tls_ca": str(tls.ca),
                "tls_cert": str(tls.client_cert),
                "tls_key": str(tls.client_key),
            },
        )
        with DaemonProcess(config) as daemon:
            client = TestClient(b.tls_port, tls=tls)
            client.subscribe(f"{T}/#")
            wait_ready(daemon)
            assert "connected to 127.0.0.1" in daemon.log()
            img, _ = digits(1)[0]
            client.publish(f"{T}/infer", img, correlation=b"tls-1")
            client.wait_for(lambda r: any(m.topic == f"{T}/predictions" for m in r), 15)
            preds = client.on(f"{T}/predictions")
            assert preds and preds[0].json()["id"] == "tls-1", daemon.log()
            client.close()
            assert daemon.terminate() == 0


def test_tls_without_client_certificate_is_refused(tmp_path):
    tls = make_tls(tmp_path / "pki")
    with Mosquitto(tmp_path, tls=tls) as b:
        config = daemon_config(tmp_path, b.tls_port, mqtt={"tls_ca": str(tls.ca)})
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30)
            assert "broker unreachable" in daemon.log()
            assert daemon.terminate() == 0


ACL = """user device
topic readwrite edge/pi-test/#
topic read replies/#

user operator
topic readwrite edge/#

user other
topic readwrite edge/other/#
"""


def test_acl_denied_client_cannot_read_predictions(tmp_path):
    users = {"device": "dev-secret", "operator": "op-secret", "other": "other-secret"}
    with Mosquitto(tmp_path, users=users, acl=ACL) as b:
        pw = tmp_path / "mqtt-password"
        pw.write_text("dev-secret\n")
        config = daemon_config(
            tmp_path, b.port, mqtt={"username": "device", "password_file": str(pw)}
        )
        with DaemonProcess(config) as daemon:
            operator = TestClient(b.port, username="operator", password="op-secret")
            other = TestClient(b.port, username="other", password="other-secret")
            operator.subscribe(f"{T}/predictions")
            other.subscribe(f"{T}/predictions")
            other.subscribe("#")
            wait_ready(daemon)
            img, _ = digits(1)[0]
            operator.publish(f"{T}/infer", img, correlation=b"acl-1")
            other.publish(f"{T}/infer", img, correlation=b"acl-denied")  # denied publish
            operator.wait_for(lambda r: len(r) >= 1, 15)
            time.sleep(1.0)
            assert [m.json()["id"] for m in operator.on(f"{T}/predictions")] == ["acl-1"], (
                daemon.log()
            )
            assert not [m for m in other.received if m.topic.startswith(T)]
            with pytest.raises(TimeoutError):
                TestClient(b.port, username="device", password="wrong", timeout=3)
            operator.close()
            other.close()
            assert daemon.terminate() == 0


def test_status_online_then_offline_after_sigkill(tmp_path, broker):
    daemon = DaemonProcess(daemon_config(tmp_path, broker.port))
    try:
        wait_ready(daemon)
        watcher = TestClient(broker.port)
        watcher.subscribe(f"{T}/status")
        got = watcher.wait_for(lambda r: any(m.payload == b"online" for m in r), 10)
        assert got and got[-1].payload == b"online" and got[-1].retain
        daemon.kill()
        got = watcher.wait_for(lambda r: r[-1].payload == b"offline", 30)  # keepalive 10 s * 1.5
        assert got[-1].payload == b"offline"
        watcher.close()
        late = TestClient(broker.port)  # retained for whoever looks later
        late.subscribe(f"{T}/status")
        assert late.wait_for(lambda r: len(r) >= 1, 5)[0].payload == b"offline"
        late.close()
    finally:
        daemon.kill()


def test_telemetry_on_time_with_every_field(tmp_path, broker):
    with DaemonProcess(daemon_config(tmp_path, broker.port, telemetry=1.0)) as daemon:
        client = TestClient(broker.port)
        client.subscribe(f"{T}/telemetry")
        client.subscribe(f"{T}/predictions")
        wait_ready(daemon)
        for img, _ in digits(5):
            client.publish(f"{T}/infer", img)
        start = time.monotonic()
        client.wait_for(lambda r: len([m for m in r if m.topic.endswith("telemetry")]) >= 4, 10)
        msgs = client.on(f"{T}/telemetry")
        assert len(msgs) >= 4, daemon.log()
        assert time.monotonic() - start < 8
        docs = [m.json() for m in msgs]
        for doc in docs:
            assert set(doc) >= {
                "ts",
                "uptime_s",
                "cpu_percent",
                "memory",
                "temperature_c",
                "throttled",
                "disk_free_bytes",
                "inference",
                "queue",
                "model",
                "delegate",
            }
            assert 0 <= doc["cpu_percent"] <= 100 * 64
            assert doc["memory"]["rss_bytes"] > 10_000_000
            assert 0 < doc["memory"]["system_percent"] <= 100
            assert doc["temperature_c"] is None or -40 < doc["temperature_c"] < 150
            assert doc["throttled"] is None or "under_voltage" in doc["throttled"]
            assert doc["disk_free_bytes"] > 0
            assert set(doc["inference"]) == {"count", "errors", "fps", "latency_ms"}
            assert set(doc["inference"]["latency_ms"]) == {"p50", "p90", "p99"}
            assert set(doc["queue"]) == {"depth", "dropped"}
            assert doc["model"]["name"] == "digits_int8"
            assert doc["delegate"] == "cpu"
        uptimes = [d["uptime_s"] for d in docs]
        gaps = [b - a for a, b in zip(uptimes, uptimes[1:])]
        assert all(0.7 < g < 2.0 for g in gaps), gaps
        last = docs[-1]
        assert last["inference"]["count"] == 5
        lat = last["inference"]["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] < 5000
        client.close()
        assert daemon.terminate() == 0


BAD = {
    "not-image": b"hello, this is not an image",
    "truncated": None,  # filled in below
    "too-many-pixels": None,
    "too-large": None,
    "bad-json": b'{"id": "bad-json", "image_b64": ',
    "bad-b64": json.dumps({"id": "bad-b64", "image_b64": "!!!not base64!!!"}).encode(),
}


def test_bad_requests_each_get_an_error_and_the_daemon_keeps_serving(tmp_path, broker):
    big = jpeg((64, 64))
    payloads = dict(BAD)
    payloads["truncated"] = big[: len(big) // 2]
    payloads["too-many-pixels"] = big  # 4096 pixels, limit below
    payloads["too-large"] = b"\xff\xd8" + bytes(5000)
    config = daemon_config(
        tmp_path, broker.port, requests={"max_pixels": 1000, "max_payload_bytes": 4096}
    )
    with DaemonProcess(config) as daemon:
        client = TestClient(broker.port)
        client.subscribe(f"{T}/errors")
        client.subscribe(f"{T}/predictions")
        wait_ready(daemon)
        for name, payload in payloads.items():
            client.publish(f"{T}/infer", payload, correlation=name.encode())
        client.wait_for(lambda r: len(r) >= len(payloads), 15)
        errors = answers(client, f"{T}/errors")
        assert sorted(errors) == sorted(payloads), daemon.log()
        codes = {k: v["error"] for k, v in errors.items()}
        assert codes["too-large"] == "too_large"
        assert codes["too-many-pixels"] == "too_many_pixels"
        assert codes["bad-json"] == "bad_json"
        assert codes["bad-b64"] == "bad_base64"
        assert codes["not-image"] in ("not_an_image", "bad_image")
        assert codes["truncated"] in ("truncated_image", "not_an_image", "bad_image")
        assert all(v["detail"] for v in errors.values())
        assert not client.on(f"{T}/predictions")
        img, _ = digits(1)[0]
        client.publish(f"{T}/infer", img, correlation=b"still-alive")
        client.wait_for(lambda r: any(m.topic.endswith("predictions") for m in r), 10)
        assert [m.json()["id"] for m in client.on(f"{T}/predictions")] == ["still-alive"]
        client.close()
        assert daemon.terminate() == 0


def test_random_payloads_leave_the_daemon_healthy(tmp_path, broker):
    rng = random.Random(1234)
    payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000))) for _ in range(200)]
    payloads = list({p: None for p in payloads})  # distinct payloads, distinct ids
    with DaemonProcess(
        daemon_config(tmp_path, broker.port, requests={"queue_size": 256})
    ) as daemon:
        client = TestClient(broker.port)
        client.subscribe(f"{T}/errors")
        client.subscribe(f"{T}/predictions")
        wait_ready(daemon)
        for i, payload in enumerate(payloads):
            client.publish(f"{T}/infer", payload, correlation=f"rand-{i}".encode(), wait=False)
        client.wait_for(lambda r: len(r) >= len(payloads), 30)
        ids = {m.json()["id"] for m in client.received}
        assert ids == {f"rand-{i}" for i in range(len(payloads))}, daemon.log()[-2000:]
        img, _ = digits(1)[0]
        client.publish(f"{T}/infer", img, correlation=b"after-noise")
        client.wait_for(lambda r: any(m.json()["id"] == "after-noise" for m in r), 10)
        assert any(m.json()["id"] == "after-noise" for m in client.on(f"{T}/predictions"))
        assert daemon.alive()
        client.close()
        assert daemon.terminate() == 0
        assert "Traceback" not in daemon.log()


def test_watched_folder(tmp_path, broker):
    watch = tmp_path / "inbox"
    watch.mkdir()
    config = daemon_config(
        tmp_path, broker.port, requests={"watch_dir": str(watch), "watch_interval": 0.2}
    )
    with DaemonProcess(config) as daemon:
        client = TestClient(broker.port)
        client.subscribe(f"{T}/#")
        wait_ready(daemon)
        img, label = digits(1)[0]
        want = expected_top([img])[0]
        (watch / "digit.png").write_bytes(img)
        (watch / "junk.png").write_bytes(b"not an image")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            (watch / "done" / "digit.png").exists() and (watch / "failed" / "junk.png").exists()
        ):
            time.sleep(0.1)
        assert (watch / "done" / "digit.png").exists(), daemon.log()
        assert (watch / "failed" / "junk.png").exists()
        result = json.loads((watch / "done" / "digit.png.json").read_text())
        assert result["id"] == "file:digit.png" and result["top"][0]["index"] == want
        failed = json.loads((watch / "failed" / "junk.png.json").read_text())
        assert failed["id"] == "file:junk.png" and failed["error"]
        client.wait_for(lambda r: len(client.on(f"{T}/errors")) >= 1, 10)
        assert [m.json()["id"] for m in client.on(f"{T}/predictions")] == ["file:digit.png"]
        client.close()
        assert daemon.terminate() == 0


def test_prometheus_endpoint_and_home_assistant_discovery(tmp_path, broker):
    import urllib.request

    from support.mosquitto import free_port

    port = free_port()
    config = daemon_config(
        tmp_path,
        broker.port,
        telemetry=0.5,
        prometheus={"enabled": True, "port": port},
        home_assistant={"enabled": True},
    )
    with DaemonProcess(config) as daemon:
        client = TestClient(broker.port)
        client.subscribe("homeassistant/#")
        client.subscribe(f"{T}/predictions")
        wait_ready(daemon)
        got = client.wait_for(lambda r: len(r) >= 9, 10)
        configs = {
            m.topic: json.loads(m.payload) for m in got if m.topic.startswith("homeassistant/")
        }
        assert f"homeassistant/sensor/{DEV}/cpu/config" in configs, daemon.log()
        late = TestClient(broker.port)  # retained for Home Assistant starting later
        late.subscribe("homeassistant/#")
        retained = late.wait_for(lambda r: len(r) >= len(configs), 5)
        assert len(retained) == len(configs) and all(m.retain for m in retained)
        late.close()
        img, _ = digits(1)[0]
        client.publish(f"{T}/infer", img)
        client.wait_for(lambda r: any(m.topic.endswith("predictions") for m in r), 10)
        deadline = time.monotonic() + 10
        text = ""
        while (
            time.monotonic() < deadline
            and f'edge_runtime_inference_total{{device="{DEV}"}} 1' not in text
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.status == 200
                text = resp.read().decode()
            time.sleep(0.2)
        assert f'edge_runtime_inference_total{{device="{DEV}"}} 1' in text, text
        client.close()
        assert daemon.terminate() == 0
