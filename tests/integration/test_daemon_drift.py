"""Drift monitoring end to end: a bundle converted here records its reference; the
daemon, as a process against a real mosquitto, watches windows of requests, keeps quiet
while they are drawn like the reference, raises ``drift`` on dark frames, another class
mix and one photo repeated, and ``drift_cleared`` when requests are normal again."""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from support.client import TestClient
from support.daemon import DaemonProcess, daemon_config
from support.mosquitto import Mosquitto, free_port

from tests.conftest import MODELS

pytestmark = [pytest.mark.integration, pytest.mark.converter]

DEV = "pi-test"
T = f"edge/{DEV}"
WINDOW = 50
CONVERT = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "edge-convert"


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits():
    with np.load(MODELS / "digits_test.npz") as data:
        return data["x"], data["y"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, digits):
    """The float digits model converted by edge-convert, validated on the held-out set."""
    folder = tmp_path_factory.mktemp("drift")
    calib = folder / "calibration"
    calib.mkdir()
    for i, img in enumerate(digits[0][:100]):
        Image.fromarray(img).save(calib / f"d{i:03d}.png")
    out = folder / "digits.edgebundle"
    done = subprocess.run(
        [
            str(CONVERT),
            str(MODELS / "digits_float.tflite"),
            "--calibration",
            str(calib),
            "--out",
            str(out),
            "--name",
            "digits",
            "--version",
            "1.0.0",
            "--mean",
            "0",
            "--std",
            "255",
            "--labels",
            str(MODELS / "digits_labels.txt"),
            "--validation",
            str(MODELS / "digits_test.npz"),
            "--json",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    ref = report["monitoring"]["reference"]
    assert ref["images"] == 360 and len(ref["top1"]) == 10
    assert ref["source"].endswith("digits_test.npz")
    assert sum(ref["brightness"]) == pytest.approx(1.0, abs=1e-4)
    return out


def send(client: TestClient, images: list[bytes], tag: str) -> None:
    """Send the images and wait until each is answered (windows do not mix phases)."""
    before = len(client.on(f"{T}/predictions"))
    for i, img in enumerate(images):
        client.publish(f"{T}/infer", img, correlation=f"{tag}-{i}".encode(), wait=False)
    got = client.wait_for(
        lambda r: sum(m.topic == f"{T}/predictions" for m in r) >= before + len(images), 120
    )
    assert sum(m.topic == f"{T}/predictions" for m in got) >= before + len(images)


def alerts(client: TestClient) -> list[dict]:
    return [m.json() for m in client.on(f"{T}/model/alerts")]  # type: ignore[misc]


def wait_alerts(client: TestClient, count: int) -> list[dict]:
    client.wait_for(lambda r: sum(m.topic == f"{T}/model/alerts" for m in r) >= count, 10)
    return alerts(client)


def test_drift_alerts_over_mqtt(tmp_path, bundle, digits):
    x, y = digits
    rng = np.random.default_rng(7)
    http = free_port()
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(
            tmp_path,
            broker.port,
            model=bundle,
            telemetry=0.5,
            monitoring={"window": WINDOW, "alert_after": 2},
            http={"enabled": True, "listen": f"127.0.0.1:{http}"},
        )
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            client = TestClient(broker.port)
            client.subscribe(f"{T}/predictions")
            client.subscribe(f"{T}/model/alerts")
            client.subscribe(f"{T}/telemetry", qos=0)
            normal = [png(x[i]) for i in rng.integers(0, len(x), 2000)]
            send(client, normal, "normal")
            time.sleep(1.5)  # a telemetry round
            mon = client.on(f"{T}/telemetry")[-1].json()["monitoring"]  # type: ignore[index]
            windows, over = mon["windows"], mon["windows_over"]
            print(
                f"2,000 requests drawn like the reference: {over} of {windows} windows of "
                f"{WINDOW} over the bound ({over / max(windows, 1):.1%}); alerts: {alerts(client)}"
            )
            assert windows == 2000 // WINDOW and mon["served"] == 2000
            assert alerts(client) == []
            assert mon["alert"] is False and set(mon["psi"]) == {"top1", "score", "input"}

            shifted = {
                "dark frames": [png(np.zeros((8, 8))) for _ in range(2 * WINDOW)],
                "another class mix": [
                    png(x[i]) for i in np.resize(np.flatnonzero(y < 2), 2 * WINDOW)
                ],
                "one photo repeated": [png(x[5])] * (2 * WINDOW),
            }
            expected = 0
            for name, images in shifted.items():
                send(client, images, name.replace(" ", "-"))
                expected += 1
                got = wait_alerts(client, expected)
                assert len(got) == expected and got[-1]["kind"] == "drift", (name, got)
                alert = got[-1]
                assert alert["value"] > alert["threshold"] > 0.25
                assert alert["window"] == WINDOW and alert["model"]["name"] == "digits"
                assert set(alert) >= {
                    "kind",
                    "metric",
                    "value",
                    "threshold",
                    "window",
                    "model",
                    "ts",
                }
                print(f"{name}: drift, {alert['metric']} worst: {alert['psi']}")
                send(client, normal[: 2 * WINDOW], f"back-{expected}")
                expected += 1
                got = wait_alerts(client, expected)
                assert got[-1]["kind"] == "drift_cleared", (name, got)
            raised = [a for a in alerts(client) if a["kind"] == "drift"]
            assert raised[0]["psi"]["input"] > raised[0]["threshold"]  # dark frames
            assert raised[1]["metric"] in ("top1", "score")  # a class mix
            # Prometheus: the same figures
            text = requests.get(f"http://127.0.0.1:{http}/metrics", timeout=5).text
            assert 'edge_runtime_drift_psi{device="pi-test",metric="input"}' in text
            assert "edge_runtime_drift_alert" in text
            client.close()
            assert daemon.terminate() == 0, daemon.log()
