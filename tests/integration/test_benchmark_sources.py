"""benchmarks/sources.py runs, quickly: every figure the issue asks for is measured and
reported (speed is not judged here: a loaded test machine's figures say nothing)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("av")
pytestmark = pytest.mark.integration


def test_the_sources_benchmark_reports_every_figure() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.sources",
            "--seconds",
            "2",
            "--clip-seconds",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["stream"] == "1920x1080 30 fps H.264" and result["machine"]
    assert result["decode_only_fps"] > 0 and result["invoke_fps"] > 0
    f0, f5 = result["fps0"], result["fps5"]
    assert f0["processed_fps"] > 0 and f0["ratio"] > 0
    assert f5["capture_to_publish_ms"]["p99"] is not None and f5["p99_ratio"] > 0
    assert f5["cpu_ms_per_frame"] > 0 and "rss_growth_mib" in f5
    assert len(result["targets"]) == 3  # a PASS/FAIL line each: fps=0 ratio, p99, RSS
