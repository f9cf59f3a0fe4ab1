"""The scaling run end to end, quick, on the committed digits bundle: each core count the
machine has is measured with the daemon pinned, against the bound, in every setting, with
JSON requests and both peers, and the daemon's threads are named in the table. Speed is
not judged here; that the run measures and reports is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT

pytestmark = pytest.mark.integration


def test_the_quick_scaling_run_measures_each_core_count_and_names_the_threads(
    tmp_path: Path,
) -> None:
    out = tmp_path / "scaling.json"
    command = [sys.executable, "-m", "benchmarks.scaling", "--quick", "--cores", "1,2"]
    command += ["--bundle", str(MODELS / "digits_v1.edgebundle"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    cpus = len(os.sched_getaffinity(0))
    assert list(r["by_cores"]) == [c for c in ("1", "2") if int(c) <= cpus]
    for cores, run in r["by_cores"].items():
        assert len(run["daemon_cpus"]) == int(cores)
        assert run["shared"] == (int(cores) == cpus)
        assert run["decode_ms"] > 0 and "1" in run["invoke_ms"]
        assert run["bound_per_s"] > 0
        expected = {"auto", "threads=1 workers=1"}
        if cores == "2":
            expected |= {"threads=1 workers=2", "threads=2 workers=1", "threads=2 workers=2"}
        assert set(run["settings"]) == expected
        for figures in (*run["settings"].values(), run["json"], run["baseline"], run["peer"]):
            assert figures["answered"] == figures["sent"] > 0
            assert figures["throughput_per_s"] > 0
        assert run["daemon"]["cpu_ms_per_request"] > 0
        assert 0 <= run["daemon"]["other_work_cores"] <= cpus
        names = {t["name"] for t in run["threads"]}
        assert {"preprocess-0", "inference", "answers", "mqtt"} <= names, names
        assert f"\n{cores} core(s): the daemon on CPU " in done.stdout
    for name, verdict in r["targets"].items():
        assert name in done.stdout and isinstance(verdict["pass"], bool)
    assert any(name.endswith("JSON requests >= 95% of raw") for name in r["targets"])
