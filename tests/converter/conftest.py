"""Fixtures for the converter tests: digits data, a trained Keras CNN, image folders,
and a runner for the real ``edge-convert`` console script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from convert_helpers import EDGE_CONVERT, MODELS, ROOT, Converted


@pytest.fixture(scope="session")
def edge_convert():
    """Run the installed ``edge-convert`` script; returns stdout/stderr text and exit code."""
    assert EDGE_CONVERT.exists(), f"{EDGE_CONVERT} is not installed (pip install -e '.[converter]')"

    def run(*args: object, timeout: float = 240) -> Converted:
        done = subprocess.run(
            [str(EDGE_CONVERT), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        return Converted(done)

    return run


@pytest.fixture(scope="session")
def digits_split():
    from make_test_models import digits_split as split

    return split()


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory, digits_split):
    """120 training digits as PNG files (calibration never sees the held-out set)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("calibration")
    for i, img in enumerate(digits_split[0][:120]):
        Image.fromarray(img).save(folder / f"d{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def digits_keras(tmp_path_factory) -> Path:
    """A small CNN trained on the digits training split, saved as ``.keras``."""
    from make_test_models import train_digits

    path = tmp_path_factory.mktemp("keras") / "digits.keras"
    train_digits(epochs=20).save(path)
    return path


@pytest.fixture(scope="session")
def heldout() -> Path:
    return MODELS / "digits_test.npz"


@pytest.fixture(scope="session")
def labels_file() -> Path:
    return MODELS / "digits_labels.txt"
