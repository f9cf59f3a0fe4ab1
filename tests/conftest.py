"""Shared test set-up: fixture paths, the command-line runner, marker gating.

The suite runs twice, once per interpreter backend (see tools/test.sh): in the host
venv (ai-edge-litert, TensorFlow) and in the device venv (tflite-runtime, numpy<2).
Tests marked ``converter`` need TensorFlow or the quantizer and run in the host venv only.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = FIXTURES / "models"
IMAGES = FIXTURES / "images"

HAS_CONVERTER = importlib.util.find_spec("tensorflow") is not None or (
    importlib.util.find_spec("ai_edge_quantizer") is not None
)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:  # type: ignore[type-arg]
    skip = pytest.mark.skip(reason="needs the host venv (TensorFlow / ai-edge-quantizer)")
    for item in items:
        if "converter" in item.keywords and not HAS_CONVERTER:
            item.add_marker(skip)


def run_command(
    module: str,
    args: Sequence[str],
    *,
    timeout: float = 120,
    env: dict | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run ``python -m MODULE ARGS`` in a fresh process, as a user would run the script."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=input,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture
def edge_runtime_cli():
    """Run ``edge-runtime`` with arguments; returns the completed process (text decoded)."""

    def run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        done = run_command("edge_runtime.cli.main", [str(a) for a in args], timeout=timeout)
        done.stdout = done.stdout.decode("utf-8", errors="replace")
        done.stderr = done.stderr.decode("utf-8", errors="replace")
        return done

    return run


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:  # type: ignore[type-arg]
    """A failed command: non-zero exit, exactly one line on stderr, no traceback."""
    assert done.returncode != 0, f"expected failure, got exit 0: {done.stdout}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got: {done.stderr!r}"
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in {lines[0]!r}"
    return lines[0]
