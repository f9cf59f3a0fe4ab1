"""The device venv (tflite-runtime, numpy<2) stays free of TensorFlow and PyTorch: an extra
that pulls either in (a test tool that requires torch, say) would bring PyPI's CUDA build
of torch, gigabytes, into a venv that stands in for a Pi."""

from __future__ import annotations

import importlib.util

import pytest


def test_the_device_venv_holds_neither_tensorflow_nor_torch() -> None:
    if importlib.util.find_spec("tflite_runtime") is None:
        pytest.skip("not the device venv")
    present = [m for m in ("tensorflow", "torch", "litert_torch") if importlib.util.find_spec(m)]
    assert present == []
