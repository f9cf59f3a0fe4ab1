"""The daemon as a process serving HTTP beside MQTT, against a real mosquitto: the same
image gets the same answer over both, /metrics serves what [prometheus] serves, and an
address off loopback without a token is refused at start."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
from support.client import TestClient
from support.daemon import DaemonProcess, command, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto, free_port

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path) as b:
        yield b


@pytest.mark.backend
def test_same_image_same_top1_over_mqtt_and_http_and_metrics(tmp_path, broker):
    images = digits(10)
    port, prom = free_port(), free_port()
    config = daemon_config(
        tmp_path,
        broker.port,
        telemetry=0.5,
        http={"enabled": True, "listen": f"127.0.0.1:{port}"},
        prometheus={"enabled": True, "port": prom},
    )
    with DaemonProcess(config) as daemon:
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        client = TestClient(broker.port)
        client.subscribe(f"{T}/predictions")
        for i, (img, _) in enumerate(images):
            client.publish(f"{T}/infer", img, correlation=f"m-{i}".encode())
        client.wait_for(lambda r: len(r) >= len(images), 20)
        over_mqtt = {
            m.json()["id"]: m.json()["top"][0]["index"] for m in client.on(f"{T}/predictions")
        }
        over_http = {}
        with requests.Session() as session:
            for i, (img, _) in enumerate(images):
                answer = session.post(
                    f"http://127.0.0.1:{port}/v1/predict",
                    data=img,
                    headers={"X-Request-Id": f"h-{i}"},
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                over_http[answer.json()["id"]] = answer.json()["top"][0]["index"]
            assert [over_mqtt[f"m-{i}"] for i in range(len(images))] == [
                over_http[f"h-{i}"] for i in range(len(images))
            ]
            time.sleep(0.3)
            # HTTP answers are not published on MQTT
            assert len(client.on(f"{T}/predictions")) == len(images)

            # /metrics on the HTTP port serves the [prometheus] exposition (the same
            # telemetry, refreshed every 0.5 s: read both until one round agrees)
            def names(text: str) -> set[str]:
                return {line.split("{")[0] for line in text.splitlines() if line[:1] != "#"}

            deadline = time.monotonic() + 10
            new = old = set()
            while time.monotonic() < deadline:
                new = names(session.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
                old = names(requests.get(f"http://127.0.0.1:{prom}/metrics", timeout=5).text)
                if new == old and "edge_runtime_latency_ms" in new:
                    break
                time.sleep(0.2)
            assert new == old and {"edge_runtime_inference_total", "edge_runtime_latency_ms"} <= new
        client.close()
        assert daemon.terminate() == 0, daemon.log()
        assert "HTTP serving on http://127.0.0.1" in daemon.log()


def test_daemon_refuses_to_listen_off_loopback_without_a_token(tmp_path, broker):
    config = daemon_config(
        tmp_path, broker.port, http={"enabled": True, "listen": f"0.0.0.0:{free_port()}"}
    )
    done = subprocess.run(
        [*command(), "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "http.token_file: required" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_dead_http_worker_is_supervised_like_the_others(tmp_path, broker):
    """The HTTP workers report to the daemon's supervisor: one that dies takes the
    daemon down with status 70 (systemd restarts it), as any other worker would."""
    port = free_port()
    config = daemon_config(
        tmp_path, broker.port, http={"enabled": True, "listen": f"127.0.0.1:{port}", "workers": 1}
    )
    with DaemonProcess(config, env={"EDGE_RUNTIME_FAULT": "die:http-0:1"}) as daemon:
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=10)
        assert daemon.proc.wait(20) == 70, daemon.log()
        assert "worker http-0 died" in daemon.log()
