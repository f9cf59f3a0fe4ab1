"""Drift monitoring end to end: a bundle converted here records its reference; the
daemon, as a process against a real mosquitto, watches windows of requests, keeps quiet
while they are drawn like the reference, raises ``drift`` on dark frames, another class
mix and one photo repeated, and ``drift_cleared`` when requests are normal again."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from support.client import TestClient
from support.daemon import DaemonProcess, daemon_config
from support.mosquitto import Mosquitto, free_port

from edge_runtime.telemetry.prometheus import render
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


def fleet_status(port: int) -> dict:
    """This device's record in ``edge-fleet status --json``."""
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "edge-fleet"),
            "status",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--json",
            "--wait",
            "1.5",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {d["device"]: d for d in json.loads(done.stdout)}[DEV]


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
                if expected == 1:  # the operator sees it: edge-fleet status
                    shown = fleet_status(broker.port)
                    assert shown["alerts"] == [alert["metric"]], shown
                    assert set(shown["drift"]["psi"]) == {"top1", "score", "input"}
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


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy_scripts" / "grafana"
#: Exported only where the board reports it (no thermal zone on a CI host): checked
#: against the exporter instead.
BOARD_ONLY = {"edge_runtime_temperature_celsius"}


def panel_metrics(dashboard: dict) -> dict[str, set[str]]:
    """Each panel's title and the edge_runtime metrics its queries name."""
    out = {}
    for panel in dashboard["panels"]:
        names = set()
        for target in panel["targets"]:
            names |= set(re.findall(r"\bedge_runtime_[a-z0-9_]+", target["expr"]))
        out[panel["title"]] = names
    return out


def test_every_dashboard_panel_names_a_metric_the_daemon_exports(tmp_path, bundle, digits):
    dashboard = json.loads((DASHBOARD / "edge-runtime-dashboard.json").read_text())
    assert dashboard["__inputs"][0]["type"] == "datasource"  # importable with a data source
    panels = panel_metrics(dashboard)
    assert all(panels.values()), panels  # every panel queries something
    fake = tmp_path / "bin"  # the Raspberry Pi firmware tool, which this host lacks
    fake.mkdir()
    (fake / "vcgencmd").write_text("#!/bin/sh\necho throttled=0x50005\n")
    (fake / "vcgencmd").chmod(0o755)
    http = free_port()
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(
            tmp_path,
            broker.port,
            model=bundle,
            telemetry=0.3,
            monitoring={"window": WINDOW},
            http={"enabled": True, "listen": f"127.0.0.1:{http}"},
        )
        env = {"PATH": f"{fake}:{os.environ['PATH']}"}
        with DaemonProcess(config, env=env) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            with requests.Session() as session:
                url = f"http://127.0.0.1:{http}"
                for img in digits[0][: 2 * WINDOW]:
                    assert session.post(f"{url}/v1/predict", data=png(img), timeout=10).ok
                assert (
                    session.post(f"{url}/v1/predict", data=b"nope", timeout=10).status_code == 400
                )
                deadline = time.monotonic() + 10
                exported: set[str] = set()
                while time.monotonic() < deadline:
                    text = session.get(f"{url}/metrics", timeout=5).text
                    exported = {line.split("{")[0] for line in text.splitlines() if line[:1] != "#"}
                    if {"edge_runtime_drift_psi", "edge_runtime_errors_total"} <= exported:
                        break
                    time.sleep(0.2)
            assert daemon.terminate() == 0, daemon.log()
    for title, names in panels.items():
        missing = names - exported - BOARD_ONLY
        assert not missing, f"panel {title!r} names {sorted(missing)}, not in /metrics"
    board = render({"temperature_c": 51.5}, "pi")
    assert all(name in board for name in BOARD_ONLY)
