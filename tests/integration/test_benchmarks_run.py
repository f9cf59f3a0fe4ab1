"""The benchmark suite end to end, quick, on the committed digits bundle: every figure the
issue asks for is measured against a real broker and daemon and written to the JSON file.
Speed is not judged here (the figures of a loaded test machine say nothing); that the
suite runs, measures and reports is."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT

pytestmark = pytest.mark.integration


def test_the_quick_suite_measures_a_given_bundle_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--bundle",
            str(MODELS / "digits_v1.edgebundle"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["model"] == "digits 1.0.0 (8x8x1 int8 input)"
    assert [row["threads"] for row in r["raw_invoke"]] == [1, 2]
    assert all(row["throughput_per_s"] > 0 for row in r["raw_invoke"])
    assert set(r["preprocess_ms"]) == {"640x480", "1920x1080"}
    assert r["pipelined_bound_per_s"] > 0
    for run in r["daemon_by_threads"].values():
        for load in ("saturation", "half_load"):
            assert run[load]["answered"] == run[load]["sent"] > 0, load
            assert 0 < run[load]["latency_ms"]["p50"] <= run[load]["latency_ms"]["p99"]
        assert run["peak_rss_bytes"] > r["interpreter_alone_rss_bytes"] / 2
        assert run["disk_bytes_per_answer"] == 0  # a connected daemon stores no answer
    assert 0 < r["ready_seconds"] < 30
    swap = r["swap"]
    assert swap["to_version"] == "2.0.0"
    assert swap["dropped"] == 0 and swap["versions"] == ["1.0.0", "2.0.0"]
    assert r["baseline"]["saturation"]["answered"] == r["baseline"]["saturation"]["sent"]
    assert set(r["small_models"]) == {"digits_int8", "detect_int8"}
    assert r["telemetry_cpu_percent"]["every_5s"] >= 0
    assert set(r["targets"]) >= {
        "throughput >= 85% of pipelined bound",
        "throughput >= 3x hand-written baseline",
        "p99 at half load <= 2x (preprocess + invoke)",
        "peak RSS <= interpreter alone + 40 MB",
        "telemetry at 5 s < 1% of a core",
        "no request lost under load",
        "model swap: 0 dropped, pause <= 2 invokes",
    }
    assert r["targets"]["no request lost under load"]["pass"]
    for name in r["targets"]:
        assert name in done.stdout  # each verdict is printed
    assert "model swap to 2.0.0 at half load" in done.stdout


def test_a_missing_bundle_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--bundle", str(tmp_path / "none.edgebundle")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert "none.edgebundle: no such file" in done.stderr


def test_a_run_ends_at_once_when_the_server_under_test_is_gone(tmp_path: Path) -> None:
    from benchmarks.load import LoadDriver
    from tests.support.mosquitto import Mosquitto

    with Mosquitto(tmp_path) as broker:
        driver = LoadDriver(broker.port, "bench/gone/infer", "bench/gone/predictions")
        try:
            started = time.monotonic()
            with pytest.raises(RuntimeError, match="ended with 3 of 3 requests unanswered"):
                driver.run(b"\xff\xd8 not served", 3, None, 60, alive=lambda: False)
            assert time.monotonic() - started < 5  # not the 60 s timeout
        finally:
            driver.close()
