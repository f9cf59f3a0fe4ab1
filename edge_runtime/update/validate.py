"""Validate a candidate bundle in a child process before it may become active.

The child loads the model with the runtime's engine, replays the golden vectors the
host stored in the bundle (inputs and the int8 outputs the host's interpreter gave) and
times ``invoke``. A model that crashes the interpreter (a segfault in some runtime
versions), hangs, or answers differently from the host fails here, in a process of its
own, and the daemon that asked carries on with the model it has.

The child runs under ``SCHED_IDLE`` (niceness 10 where that policy is missing): it
takes only the cycles the daemon's requests leave, and a request that wakes up takes its
core back at once rather than at the next scheduler tick. Its invoke times leave out the
time it waited for a CPU, so a busy device does not make a fast model look slow; and a
child that timed out having had little CPU (a device saturated all along) is reported as
``busy`` and tried again later, not refused as a broken model.

    python -m edge_runtime.update.validate BUNDLE      (the child; prints one JSON line)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from edge_runtime.errors import BusyError, EdgeError, ValidationError

T = TypeVar("T")

#: Largest difference, in quantization steps, between the device's and the host's outputs.
#: The same model on the same backend gives identical integers; other kernels (another
#: backend, XNNPACK vs reference) may round a step differently.
TOLERANCE = 2
#: One "step" of a float output (boxes, scores after post-processing).
FLOAT_STEP = 0.01
#: Test-only: when set in the child's environment, the child aborts after loading the
#: model, as a crashing interpreter would. Never set outside the test suite.
CRASH_HOOK = "EDGE_RUNTIME_TEST_VALIDATION_CRASH"
#: Test-only: when set, the child sleeps (``sleep``) or spins (``spin``) instead of
#: validating, as a starved or a hung child would; ``MODE:FILE`` only while FILE exists.
HANG_HOOK = "EDGE_RUNTIME_TEST_VALIDATION_HANG"
#: The child's niceness where ``SCHED_IDLE`` is not available.
CHILD_NICE = 10
#: A child that timed out with less CPU time than this share of the timeout was starved
#: by a busy device rather than hung by its model.
STARVED_SHARE = 0.5


@dataclass(frozen=True)
class ValidationReport:
    golden: int
    max_diff: list[int]
    invoke_ms_p50: float


def validate_in_child(
    bundle: Path, *, timeout: float = 60.0, max_invoke_ms: float | None = None
) -> ValidationReport:
    """Run the golden vectors of ``bundle`` in a fresh Python process.

    Raises:
        ValidationError: the child crashed, hung, could not load the model, the outputs
            differ from the host's, or invoke is slower than ``max_invoke_ms``.
        BusyError: the child timed out having had less than half the timeout in CPU time.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.update.validate", str(bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        used = _cpu_seconds(child.pid)  # read before the kill: the CPU it was given
        child.kill()
        child.communicate()
        if used is not None and used < STARVED_SHARE * timeout:
            raise BusyError(
                f"validation did not finish within {timeout:g} s: the device was busy and "
                f"the check got {used:.1f} s of CPU"
            ) from exc
        raise ValidationError(f"validation did not finish within {timeout:g} s") from exc
    except BaseException:  # the update thread stopping: no child is left behind
        child.kill()
        child.communicate()
        raise
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        raise ValidationError(f"the model crashed the interpreter in validation ({name})")
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if child.returncode != 0 or "error" in result or not result:
        detail = result.get("error") or (stderr.strip().splitlines() or ["no output"])[-1]
        raise ValidationError(f"validation failed: {detail}")
    report = ValidationReport(result["golden"], result["max_diff"], result["invoke_ms_p50"])
    if max(report.max_diff, default=0) > TOLERANCE:
        raise ValidationError(
            f"outputs differ from the host's golden vectors by up to {max(report.max_diff)} "
            f"quantization steps (at most {TOLERANCE} allowed)"
        )
    if max_invoke_ms is not None and report.invoke_ms_p50 > max_invoke_ms:
        raise ValidationError(
            f"invoke takes {report.invoke_ms_p50:.1f} ms, over the {max_invoke_ms:g} ms bound"
        )
    return report


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a running process has used; None if it cannot be read."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _waited_ns() -> int:
    """Nanoseconds this thread has spent ready to run but waiting for a CPU (0 where the
    kernel does not keep scheduler statistics)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _own_ms(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and the milliseconds it took, less the time this thread spent waiting
    for a CPU (what the same call takes on a device with nothing else to run)."""
    waited, start = _waited_ns(), time.perf_counter_ns()
    result = fn()
    return result, (time.perf_counter_ns() - start - (_waited_ns() - waited)) / 1e6


def _background() -> None:
    """Run this process on the cycles nothing else wants: ``SCHED_IDLE``, or niceness
    ``CHILD_NICE`` where the kernel or platform has no such policy."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(CHILD_NICE)


def _replay(bundle: Path) -> dict[str, object]:
    import numpy as np

    from edge_runtime.inference.engine import Engine

    engine = Engine.load(bundle, delegate="auto")
    if os.environ.get(CRASH_HOOK):
        os.abort()
    if engine.source.golden is None:
        return {"error": "the bundle has no golden vectors"}
    golden = np.load(io.BytesIO(engine.source.golden))
    inputs = golden["inputs"]
    worst = [0] * len(engine.layout.tensors)
    times = []
    for i in range(len(inputs)):
        outputs, ms = _own_ms(lambda: engine.run([inputs[i : i + 1]]))  # noqa: B023
        times.append(ms)
        for k, got in enumerate(outputs):
            expected = golden[f"output_{k}"][i]
            got = got.reshape(expected.shape)
            if expected.dtype.kind == "f":  # float outputs (detection post-processing)
                diff = np.abs(got.astype(np.float64) - expected) / FLOAT_STEP
            else:
                diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
            worst[k] = max(worst[k], int(np.ceil(diff.max(initial=0))))
    engine.close()
    return {"golden": len(inputs), "max_diff": worst, "invoke_ms_p50": statistics.median(times)}


def main() -> int:
    _background()  # the daemon's requests go first
    hang, _, only_if = os.environ.get(HANG_HOOK, "").partition(":")
    if only_if and not os.path.exists(only_if):
        hang = ""
    if hang == "sleep":
        time.sleep(3600)
    while hang == "spin":
        pass
    try:
        result = _replay(Path(sys.argv[1]))
    except (EdgeError, KeyError, ValueError, OSError) as exc:
        result = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
