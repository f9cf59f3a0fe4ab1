"""A daemon started without ``threads`` or ``preprocess_workers`` chooses them itself and
reports the choice and its figures: one INFO line in the log, ``tuning`` in telemetry
(real mosquitto, the daemon as a process)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from edge_runtime.daemon.cores import usable_cores
from edge_runtime.daemon.retune import SAMPLES
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess, daemon_config
from tests.support.images import digits
from tests.support.mosquitto import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.backend]

DEV = "pi-test"


def auto_config(tmp_path: Path, port: int) -> Path:
    config = daemon_config(tmp_path, port, telemetry=0.5)
    text = config.read_text()
    assert "threads = 1\n" in text
    config.write_text(text.replace("threads = 1\n", ""))  # no threads key: "auto"
    return config


def telemetry_after(
    config: Path, port: int, requests: int = 0, until: Callable[[dict], bool] = bool
) -> tuple[dict, str]:
    """After ``requests`` digit images were answered: the first telemetry for which
    ``until`` holds (waiting 10 s at most; else the last one), and the log."""
    topic = f"edge/{DEV}/telemetry"
    with DaemonProcess(config) as daemon:
        client = TestClient(port)
        try:
            client.subscribe(f"edge/{DEV}/predictions")
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            for image, _ in digits(requests):
                client.publish(f"edge/{DEV}/infer", image)
            client.wait_for(lambda r: len(r) >= requests, 30)
            client.subscribe(topic)

            def seen(received: list) -> bool:
                return any(until(m.json()) for m in received if m.topic == topic)

            client.wait_for(seen, 10)
            docs = [m.json() for m in client.on(topic)]
            assert docs, daemon.log()
            return next((d for d in docs if until(d)), docs[-1]), daemon.log()
        finally:
            client.close()


def test_a_daemon_without_threads_reports_its_tuning_in_telemetry(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        doc, log = telemetry_after(auto_config(tmp_path, broker.port), broker.port)
    tuning = doc["tuning"]
    cores = usable_cores()
    assert tuning["cores"] == cores
    assert 1 <= tuning["threads"] <= min(cores, 4)
    assert 1 <= tuning["preprocess_workers"] <= cores
    assert set(tuning["invoke_ms"]) == {str(k) for k in range(1, min(cores, 4) + 1)}
    assert tuning["preprocess_ms"] > 0 and "bound at about" in tuning["reason"]
    lines = [line for line in log.splitlines() if "runs with" in line]
    assert len(lines) == 1 and "interpreter thread(s)" in lines[0], log


def test_configured_numbers_are_reported_as_given(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(
            tmp_path, broker.port, telemetry=0.5, requests={"preprocess_workers": 1}
        )
        doc, _ = telemetry_after(config, broker.port)
    assert doc["tuning"]["threads"] == 1 and doc["tuning"]["preprocess_workers"] == 1
    assert doc["tuning"]["reason"] == "set in the config" and doc["tuning"]["invoke_ms"] == {}


def test_the_threads_are_chosen_again_from_the_requests_served(tmp_path: Path) -> None:
    """8x8 digit images cost a fraction of the calibration's 1920x1080 photo to decode:
    after the first requests the choice is made again from what they cost."""
    with Mosquitto(tmp_path) as broker:
        doc, log = telemetry_after(
            auto_config(tmp_path, broker.port),
            broker.port,
            SAMPLES,
            until=lambda doc: "re-chosen" in doc["tuning"]["reason"],
        )
    tuning = doc["tuning"]
    assert "re-chosen from" in tuning["reason"], (tuning, log)
    assert tuning["preprocess_ms"] < 1.0
    assert len([line for line in log.splitlines() if "runs with" in line]) == 2, log
