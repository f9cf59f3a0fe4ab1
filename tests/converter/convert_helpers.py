"""Helpers shared by the converter tests (imported by name; ``conftest`` is ambiguous)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "models"
EDGE_CONVERT = Path(sys.executable).with_name("edge-convert")

#: Keras under numpy 2 warns on every weight copy (``__array__`` without ``copy``); noise.
KERAS_NUMPY2 = pytest.mark.filterwarnings("ignore::DeprecationWarning")

if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))


class Converted:
    """A finished ``edge-convert`` run."""

    def __init__(self, done: subprocess.CompletedProcess) -> None:  # type: ignore[type-arg]
        self.returncode = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr

    def report(self) -> dict[str, Any]:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)  # type: ignore[no-any-return]


def digits_args(calib: Path, out: Path, *extra: object) -> list:  # type: ignore[type-arg]
    return [
        "--calibration", calib, "--out", out, "--name", "digits", "--version", "1.0.0",
        "--mean", "0", "--std", "255", *extra,
    ]  # fmt: skip


def held_out_images() -> np.ndarray:
    with np.load(MODELS / "digits_test.npz") as data:
        return data["x"]


def one_line_failure(done: Converted, *fragments: str) -> str:
    """A failed run: non-zero exit, exactly one line on stderr naming ``fragments``."""
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]
    return lines[0]
