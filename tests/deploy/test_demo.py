"""The README's first command, end to end: ``deploy_scripts/demo.sh``, run as the README
says after set-up has run once: set-up then says one line, and the demo tells its story in
readable lines (no raw JSON, no Python ``None``)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_the_whole_story() -> None:
    setup = subprocess.run(
        ["bash", "tools/setup.sh"], capture_output=True, text=True, timeout=1800, cwd=ROOT
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    done = subprocess.run(
        ["bash", str(ROOT / "deploy_scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    # a second set-up run: one line, then the demo's own first line
    before = out[: out.index("\n== ")].strip().splitlines()
    assert len(before) == 1 and before[0].startswith("setup: up to date"), before
    assert done.stderr == ""
    assert "None" not in out and not re.search(r"^\s*[{\[]", out, flags=re.MULTILINE)
    assert "passed every check" in out and "status: online" in out
    # Each request image is named after its true digit; the answer must name it too.
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    answers = re.findall(r"v1-\d-digit-(\d) -> (\w+)", out)
    assert len(answers) == 10
    assert sum(words[int(truth)] == label for truth, label in answers) >= 9
    assert "10 of 10 answered" in out
    assert re.search(r"^  error not_an_image for request \S+: not an image", out, re.MULTILINE)
    assert re.search(r"inferences 10 +errors 1 ", out)
    # the update: every stage, no request lost across the swap, the new version answers
    for stage in ("downloading", "verifying", "validating", "activating", "applied"):
        assert f"demo-pi: {stage}" in out
    assert "requests sent during the swap: 40, answered: 40" in out
    # the second conversion shows its accuracy like the first
    assert len(re.findall(r"^accuracy +float 0\.9\d+ +int8 0\.9\d+", out, re.MULTILINE)) == 2
    assert "retained state: active digits 1.1.0, previous digits 1.0.0, last update 1.1.0" in out
    assert len(re.findall(r"v1\.1-\d-digit-\d -> \w+ .* model digits 1\.1\.0", out)) == 10
    assert "probation of 1.1.0: passed" in out
    assert re.search(r"demo-pi +online +digits 1\.1\.0 .* 1\.1\.0 applied", out)
    assert "WARNING" not in out
    assert "daemon exited 0" in out and "status now: offline" in out
    # the camera: the ten request digits as an H.264 clip read by a file:// source in
    # changes mode: each change published (in frame order), then a retained JPEG snapshot
    assert "state: connecting -> streaming -> ended" in out
    changes = re.findall(r"^  frame +(\d+) -> (\w+) +0\.\d+  capture to publish", out, re.M)
    assert len(changes) >= 5 and all(label in words for _, label in changes), changes
    assert [int(f) for f, _ in changes] == sorted(int(f) for f, _ in changes)
    assert f"{len(changes)} changes published" in out
    assert re.search(r"snapshot \(retained\): JPEG 64x64, \d+ bytes", out)
