"""A daemon started without ``threads`` or ``preprocess_workers`` chooses them itself and
reports the choice and its figures: one INFO line in the log, ``tuning`` in telemetry
(real mosquitto, the daemon as a process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.daemon.cores import usable_cores
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess, daemon_config
from tests.support.mosquitto import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.backend]

DEV = "pi-test"


def first_telemetry(config: Path, port: int) -> tuple[dict, str]:
    with DaemonProcess(config) as daemon:
        client = TestClient(port)
        try:
            client.subscribe(f"edge/{DEV}/telemetry")
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            client.wait_for(lambda r: len(r) >= 1, 10)
            return client.on(f"edge/{DEV}/telemetry")[0].json(), daemon.log()
        finally:
            client.close()


def test_a_daemon_without_threads_reports_its_tuning_in_telemetry(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port, telemetry=0.5)
        text = config.read_text()
        assert "threads = 1\n" in text
        config.write_text(text.replace("threads = 1\n", ""))  # no threads key: "auto"
        doc, log = first_telemetry(config, broker.port)
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
        doc, _ = first_telemetry(config, broker.port)
    assert doc["tuning"]["threads"] == 1 and doc["tuning"]["preprocess_workers"] == 1
    assert doc["tuning"]["reason"] == "set in the config" and doc["tuning"]["invoke_ms"] == {}
