"""``edge-runtime health`` against a running daemon: healthy while every worker is well,
unhealthy once one is stuck (while the process still runs: what a container's health
check or a Kubernetes probe must catch), and after a clean stop."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pytest
from support.client import TestClient
from support.daemon import DaemonProcess, command, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

T = "edge/pi-test"


def health(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "health", "--config", str(config), "--max-age", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_health(config: Path, code: int, timeout: float) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout
    while True:
        done = health(config)
        if done.returncode == code or time.monotonic() > deadline:
            return done
        time.sleep(0.5)


def request(rid: str, img: bytes) -> bytes:
    return json.dumps({"id": rid, "image_b64": base64.b64encode(img).decode()}).encode()


def test_health_is_ok_while_workers_are_well_and_fails_once_one_is_stuck(tmp_path):
    images = [img for img, _ in digits(2)]
    env = {"EDGE_RUNTIME_FAULT": "hang:answers:2"}  # storing the second answer never ends
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port)
        assert health(config).returncode == 1  # not started: no liveness file
        with DaemonProcess(config, env=env) as daemon:
            up = wait_health(config, 0, 30)
            assert up.returncode == 0, (up.stderr, daemon.log())
            assert up.stdout.startswith("healthy: ")
            client = TestClient(broker.port)
            client.subscribe(f"{T}/predictions")
            client.publish(f"{T}/infer", request("first", images[0]))
            client.wait_for(lambda r: bool(r), 15)
            client.publish(f"{T}/infer", request("second", images[1]))
            # the answer worker's bound is 10 s; then no more pings, and 3 s later the file
            # is too old
            down = wait_health(config, 1, 30)
            assert down.returncode == 1, daemon.log()
            assert "bound 3 s" in down.stderr and daemon.alive()
            assert "worker answers stuck" in daemon.log()
            client.close()


def test_health_fails_after_a_clean_stop(tmp_path):
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port)
        with DaemonProcess(config) as daemon:
            assert wait_health(config, 0, 30).returncode == 0, daemon.log()
            assert daemon.terminate() == 0, daemon.log()
        stopped = health(config)
        assert stopped.returncode == 1 and "starting or stopped" in stopped.stderr
