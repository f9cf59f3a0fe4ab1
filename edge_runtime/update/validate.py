"""Validate a candidate bundle in a child process before it may become active.

The child loads the model with the runtime's engine, replays the golden vectors the
host stored in the bundle (inputs and the int8 outputs the host's interpreter gave) and
times ``invoke``. A model that crashes the interpreter (a segfault in some runtime
versions), hangs, or answers differently from the host fails here, in a process of its
own, and the daemon that asked carries on with the model it has.

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

from edge_runtime.errors import EdgeError, ValidationError

#: Largest difference, in quantization steps, between the device's and the host's outputs.
#: The same model on the same backend gives identical integers; other kernels (another
#: backend, XNNPACK vs reference) may round a step differently.
TOLERANCE = 2
#: One "step" of a float output (boxes, scores after post-processing).
FLOAT_STEP = 0.01
#: Test-only: when set in the child's environment, the child aborts after loading the
#: model, as a crashing interpreter would. Never set outside the test suite.
CRASH_HOOK = "EDGE_RUNTIME_TEST_VALIDATION_CRASH"
#: The child's niceness: validation uses the cores the serving threads leave idle.
CHILD_NICE = 10


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
        ValidationError: the child crashed, timed out, could not load the model, the
            outputs differ from the host's, or invoke is slower than ``max_invoke_ms``.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edge_runtime.update.validate", str(bundle)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(f"validation did not finish within {timeout:g} s") from exc
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ValidationError(f"the model crashed the interpreter in validation ({name})")
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if done.returncode != 0 or "error" in result or not result:
        detail = result.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
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
        start = time.perf_counter()
        outputs = engine.run([inputs[i : i + 1]])
        times.append((time.perf_counter() - start) * 1000)
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
    with contextlib.suppress(OSError):  # the daemon's requests go first
        os.nice(CHILD_NICE)
    try:
        result = _replay(Path(sys.argv[1]))
    except (EdgeError, KeyError, ValueError, OSError) as exc:
        result = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    print(json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
