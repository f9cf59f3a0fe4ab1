"""PyTorch models in: the only module that imports ``torch`` and ``litert_torch``, and only
when a PyTorch or ONNX model is converted (extra ``torch``).

A model comes as an exported program (``.pt2``, ``torch.export.save``), as a factory
``MODULE:FACTORY`` (a function returning an ``nn.Module``, called with no arguments), or
as an ONNX graph read by ``onnx_source`` and run with torch operations
(``converter.onnx_torch``). ``litert-torch`` turns it into a float ``.tflite`` whose input
is NHWC (its ``to_channel_last_io`` puts the transpose into the graph, where the converter
folds it into the first convolution); the project's own float-``.tflite`` path then
quantizes it. The float reference for the accuracy gate is the PyTorch module itself.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converter.capture import captured_output
from edge_runtime.errors import ConfigError, ModelError

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the extra being installed
    raise ConfigError(
        "PyTorch and ONNX models need the converter's torch extra: "
        "pip install 'edge-runtime[torch]' (CPU PyTorch: see the README)"
    ) from exc


def from_factory(spec: str) -> Any:
    """The ``nn.Module`` that ``MODULE:FACTORY`` returns, in eval mode.

    Raises:
        ConfigError: not of that form, or the module or function is not there.
        ModelError: the factory raised, or returned something that is no module.
    """
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ConfigError(f"--torch {spec!r}: expected MODULE:FACTORY, e.g. mypkg.models:build")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module beside the user's files, as python -m does
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module's
        raise ConfigError(
            f"--torch {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from exc
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ConfigError(f"--torch {spec}: {module_name} has no function {factory_name}")
    try:
        with captured_output():
            model = factory()
    except Exception as exc:  # noqa: BLE001 - the factory is user code
        raise ModelError(
            f"--torch {spec}: the factory raised {type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(
            f"--torch {spec}: the factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model.eval()


def from_exported(path: Path) -> tuple[Any, tuple[int, ...] | None]:
    """The module of an exported program (``.pt2``) and its example input's shape.

    Raises:
        ModelError: not a readable exported program.
    """
    try:
        with captured_output():
            program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ModelError(
            f"{path} is not a readable PyTorch exported program (.pt2): {_first_line(exc)}"
        ) from exc
    shape = None
    args: Any = program.example_inputs[0] if program.example_inputs else ()
    if len(args) == 1 and hasattr(args[0], "shape"):
        shape = tuple(int(d) for d in args[0].shape)
    return program.module(), shape


def from_onnx(graph: Any) -> Any:
    """An ONNX graph (``onnx_source.Graph``) as a module of torch operations."""
    from converter.onnx_torch import OnnxModule

    return OnnxModule(graph).eval()


class TorchReference:
    """The source model as the float reference: NHWC float input in, outputs out."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))
            out = self._module(x.permute(0, 3, 1, 2).contiguous())
        items = out if isinstance(out, (tuple, list)) else (out,)
        return [np.asarray(o.detach().numpy()) for o in items]


def check_runs(module: Any, nchw_shape: Sequence[int]) -> None:
    """One run on zeros of ``nchw_shape``.

    Raises:
        ModelError: the model fails on an input of that shape.
    """
    try:
        with torch.no_grad():
            module(torch.zeros(tuple(nchw_shape)))
    except Exception as exc:  # noqa: BLE001 - user model code
        raise ModelError(
            f"the model fails on an input of shape {list(nchw_shape)}: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def to_float_tflite(module: Any, nchw_shape: Sequence[int]) -> bytes:
    """A float ``.tflite`` of ``module`` with an NHWC input of batch 1.

    Raises:
        ModelError: litert-torch cannot convert it (the first line of its reason).
    """
    n, c, h, w = (int(d) for d in nchw_shape)
    try:
        with captured_output():  # its import and conversion log on fds 1 and 2
            import litert_torch

            # no .eval() here: the module of an exported program refuses train()
            nhwc = litert_torch.to_channel_last_io(module, args=[0])
            edge = litert_torch.convert(nhwc, (torch.zeros(n, h, w, c),))
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "model.tflite"
                edge.export(str(out))
                return out.read_bytes()
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise ModelError(f"litert-torch could not convert the model: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
