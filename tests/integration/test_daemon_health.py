"""``edge-runtime health`` against a running daemon: healthy while every worker is well,
unhealthy once one is stuck (while the process still runs: what a container's health
check or a Kubernetes probe must catch), and after a clean stop."""

from __future__ import annotations

import base64
import json
import os
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


def written_to_storage(pid: int) -> int:
    """What the process sent to storage so far (``write_bytes`` of /proc/PID/io), as the
    benchmark measures it."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError(f"no write_bytes in /proc/{pid}/io")


def test_the_liveness_refresh_writes_nothing_to_storage(tmp_path):
    """A connected daemon with nothing to do refreshes its liveness file every second and
    writes nothing to storage: on an SD card each write is wear. ``os.sync`` writes out
    what is dirty, so a refresh of a file on disk after it dirties a page again (4 KiB
    counted at once, as the kernel does every half a minute without the sync)."""
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port, telemetry=600.0)
        with DaemonProcess(config) as daemon:
            assert wait_health(config, 0, 30).returncode == 0, daemon.log()
            written = []
            for _ in range(3):
                os.sync()
                before = written_to_storage(daemon.proc.pid)
                time.sleep(2.5)  # two refreshes at least (one a second)
                written.append(written_to_storage(daemon.proc.pid) - before)
            assert health(config).returncode == 0, daemon.log()
            assert written == [0, 0, 0], written
            assert not list((tmp_path / "state").glob("liveness*"))
            assert daemon.terminate() == 0
