"""Validation of a candidate bundle in a child process: golden vectors replayed by the
real interpreter; a crash, a mismatch or a slow model is refused with a reason."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle.reader import read_bundle
from edge_runtime.bundle.writer import write_bundle
from edge_runtime.errors import BusyError, ValidationError
from edge_runtime.update.validate import CRASH_HOOK, HANG_HOOK, validate_in_child
from tests.conftest import MODELS

pytestmark = pytest.mark.backend
BUNDLE = MODELS / "digits_v1.edgebundle"
#: A process set up as the child sets itself up, spinning for 0.3 s on the one CPU a
#: busy loop at normal priority also runs on: it prints its scheduling policy, the wall
#: time of the spin and the time ``_own_ms`` gives for it.
PROBE = """
import os, sys, time
from edge_runtime.update import validate
os.sched_setaffinity(0, {int(sys.argv[1])})
validate._background()
def spin():
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass
start = time.monotonic()
_, ms = validate._own_ms(spin)
print(os.sched_getscheduler(0), (time.monotonic() - start) * 1000, ms)
"""
HOG = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"
#: Seconds the busy loop runs at most.
HOG_SECONDS = 3.0


def _rewrite(tmp_path: Path, change_golden) -> Path:  # type: ignore[no-untyped-def]
    """The committed bundle with its golden vectors changed (unsigned, as staged)."""
    with tarfile.open(BUNDLE) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    manifest = __import__("json").loads(files.pop("manifest.json"))
    files.pop("signatures.json")
    manifest.pop("files")
    golden = dict(np.load(io.BytesIO(files["golden.npz"])))
    change_golden(golden)
    out = io.BytesIO()
    np.savez_compressed(out, **golden)
    files["golden.npz"] = out.getvalue()
    path = write_bundle(tmp_path / "changed.edgebundle", manifest, files)
    read_bundle(path)  # still a well-formed bundle
    return path


def test_committed_bundle_passes() -> None:
    report = validate_in_child(BUNDLE)
    assert report.golden >= 1 and report.max_diff == [0] and report.invoke_ms_p50 > 0


def test_outputs_that_differ_from_the_host_are_refused(tmp_path: Path) -> None:
    def shift(golden: dict) -> None:  # type: ignore[type-arg]
        golden["output_0"] = np.clip(golden["output_0"].astype(np.int16) + 5, -128, 127).astype(
            golden["output_0"].dtype
        )

    with pytest.raises(ValidationError, match="differ from the host") as info:
        validate_in_child(_rewrite(tmp_path, shift))
    assert info.value.reason == "validation"


def test_a_crash_in_the_child_is_reported_and_the_caller_lives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CRASH_HOOK, "1")
    with pytest.raises(ValidationError, match="crashed the interpreter.*SIGABRT"):
        validate_in_child(BUNDLE)


def test_a_slow_model_is_refused() -> None:
    with pytest.raises(ValidationError, match="over the 1e-06 ms bound"):
        validate_in_child(BUNDLE, max_invoke_ms=1e-6)


def test_a_model_that_does_not_load_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.edgebundle"
    broken.write_bytes(b"not a bundle at all" * 50)
    with pytest.raises(ValidationError, match="validation failed: .*broken.edgebundle"):
        validate_in_child(broken)


def test_a_child_that_spins_past_the_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HANG_HOOK, "spin")
    with pytest.raises(ValidationError, match="did not finish within 2 s") as info:
        validate_in_child(BUNDLE, timeout=2)
    assert info.value.reason == "validation"


def test_a_child_starved_of_cpu_is_busy_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HANG_HOOK, "sleep")
    with pytest.raises(BusyError, match="device was busy.*got 0.[0-9] s of CPU") as info:
        validate_in_child(BUNDLE, timeout=2)
    assert info.value.reason == "busy" and not isinstance(info.value, ValidationError)


def test_the_child_yields_to_busy_cores_and_times_only_its_own_turns() -> None:
    """Under SCHED_IDLE the child gets only what a CPU's other work leaves; its timings
    leave out the waits for one, so a model is not called slow because the device is busy."""
    cpu = str(min(os.sched_getaffinity(0)))
    hog = subprocess.Popen([sys.executable, "-c", HOG, cpu])
    # some kernels give a SCHED_IDLE task nothing at all beside a busy loop: the loop
    # stops after a while, so the probe ends either way, having waited for its turns
    stop_hog = threading.Timer(HOG_SECONDS, hog.kill)
    try:
        time.sleep(0.2)
        stop_hog.start()
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, cpu],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    finally:
        stop_hog.cancel()
        hog.kill()
        hog.wait()
    policy, wall_ms, own_ms = probe.stdout.split()
    assert int(policy) == os.SCHED_IDLE
    assert float(wall_ms) >= 300 and float(own_ms) < float(wall_ms) / 2, probe.stdout
