"""The serving benchmark end to end, small: HTTP and MQTT bursts against one daemon with
monitoring on and off, and the monitor's cost per request, written to the JSON file.
Speed is not judged here (a loaded test machine's figures say nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.converter]


def test_the_serving_benchmark_measures_http_mqtt_and_monitoring(tmp_path: Path) -> None:
    out = tmp_path / "serving.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.serving",
            "--count",
            "40",
            "--rounds",
            "1",
            "--out",
            str(out),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    for label in ("monitoring_on", "monitoring_off"):
        for proto in ("mqtt", "http"):
            run = results[label][proto]
            assert run["answered"] == 40 and run["throughput"] > 0, (label, proto, run)
    assert results["observe"]["reference"] is True  # the digits bundle converted here
    assert results["observe"]["observe_us"] > 0
    assert "HTTP / MQTT throughput" in done.stdout
