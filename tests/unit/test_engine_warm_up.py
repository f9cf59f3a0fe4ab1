"""The engine's warm-up: one real invoke on zeros before any request, and a clear error
when the engine cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.errors import ModelError
from edge_runtime.inference.engine import Engine
from tests.conftest import MODELS

pytestmark = pytest.mark.backend


@pytest.mark.parametrize("model", ["digits_int8.tflite", "detect_int8.tflite"])
def test_warm_up_runs_the_model_once_on_zeros(model: str) -> None:
    engine = Engine.load(MODELS / model, delegate="cpu", threads=1)
    try:
        interpreter = engine._interpreter
        assert interpreter is not None
        # the outputs first hold the answer to another input (a fresh interpreter's
        # output memory may hold anything, even an earlier engine's answer to zeros)
        other = [
            np.full(spec.shape, np.iinfo(spec.dtype).max, spec.dtype) for spec in engine.inputs
        ]
        before = [o.copy() for o in engine.run(other)]
        assert engine.warm_up() > 0
        warmed = [interpreter.get_tensor(t.index).copy() for t in engine.layout.tensors]
        zeros = [np.zeros(spec.shape, dtype=spec.dtype) for spec in engine.inputs]
        expected = engine.run(zeros)
        # the outputs are the model's answer to zeros, which an invoke alone writes
        assert all(np.array_equal(w, e) for w, e in zip(warmed, expected))
        assert any(not np.array_equal(b, e) for b, e in zip(before, expected))
    finally:
        engine.close()


def test_warm_up_of_a_closed_engine_is_a_model_error() -> None:
    engine = Engine.load(MODELS / "digits_int8.tflite", delegate="cpu", threads=1)
    engine.close()
    with pytest.raises(ModelError, match="closed"):
        engine.warm_up()


def test_before_native_runs_before_each_gil_bound_step_of_a_load() -> None:
    calls: list[int] = []
    engine = Engine.load(MODELS / "digits_int8.tflite", before_native=lambda: calls.append(1))
    try:
        assert len(calls) == 2  # before Interpreter() and before allocate_tensors()
        engine.warm_up()
    finally:
        engine.close()
