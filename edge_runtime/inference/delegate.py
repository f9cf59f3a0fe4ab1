"""Choosing between the CPU and a Coral Edge TPU.

A model compiled by ``edgetpu_compiler`` (it contains ``edgetpu-custom-op``) runs only
with the Edge TPU delegate; an uncompiled model runs only on the CPU (the delegate would
leave every op to the CPU anyway). A bundle may carry both forms, and then:

- ``auto`` uses the Edge TPU when its library loads, else the CPU model with one warning;
- ``edgetpu`` insists on the Edge TPU and fails with a clear message without it;
- ``cpu`` never loads the library.

The loader is injectable, so every path is tested without the hardware.
"""

from __future__ import annotations

import logging
import platform
import re
from dataclasses import dataclass
from typing import Any, Callable

from edge_runtime.errors import ConfigError, DelegateError

log = logging.getLogger(__name__)

DELEGATE_MODES = ("auto", "cpu", "edgetpu")
_DEVICE = re.compile(r"^(usb|pci)(:\d+)?$")
_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}

Loader = Callable[[str, dict[str, str]], Any]


@dataclass(frozen=True)
class DelegateChoice:
    """What runs the model: ``name`` is ``cpu`` or ``edgetpu``; ``delegates`` go to the
    interpreter."""

    name: str
    delegates: tuple[Any, ...] = ()


def edgetpu_library() -> str:
    return _LIBRARIES.get(platform.system(), "libedgetpu.so.1")


def check_device(device: str | None) -> str | None:
    """``usb``, ``usb:N``, ``pci``, ``pci:N`` or ``None`` (the first Edge TPU found)."""
    if device is None or device == "":
        return None
    if not _DEVICE.match(device):
        raise ConfigError(f"Edge TPU device {device!r} is not one of usb, usb:N, pci, pci:N")
    return device


def choose(
    mode: str,
    *,
    model_is_edgetpu: bool,
    cpu_model_available: bool = False,
    device: str | None = None,
    loader: Loader | None = None,
) -> DelegateChoice:
    """Pick what runs the model for ``mode`` (auto|cpu|edgetpu).

    ``model_is_edgetpu`` says the primary model is compiled for the Edge TPU;
    ``cpu_model_available`` that an uncompiled form is there to fall back to.
    The returned choice's ``name`` is ``edgetpu`` (run the compiled model with the
    delegate) or ``cpu`` (run the uncompiled one).

    Raises:
        ConfigError: unknown mode or device string.
        DelegateError: the Edge TPU is needed and cannot be used.
    """
    if mode not in DELEGATE_MODES:
        raise ConfigError(f"delegate {mode!r} is not one of {', '.join(DELEGATE_MODES)}")
    device = check_device(device)
    has_cpu_model = cpu_model_available or not model_is_edgetpu
    if mode == "cpu" or (mode == "auto" and not model_is_edgetpu):
        if not has_cpu_model:
            raise DelegateError(_EDGETPU_MODEL_ON_CPU)
        return DelegateChoice("cpu")
    if not model_is_edgetpu:  # mode == "edgetpu"
        raise DelegateError(
            "--delegate edgetpu needs a model compiled by edgetpu_compiler (with "
            "edgetpu-custom-op); this one is not, so it would run entirely on the CPU. "
            "Convert with edge-convert --edgetpu, or use --delegate cpu"
        )
    library = edgetpu_library()
    options = {"device": device} if device else {}
    try:
        delegate = (loader or _default_loader)(library, options)
    except DelegateError as exc:
        if mode == "auto" and has_cpu_model:
            _warn_once(f"Edge TPU not available ({exc}); running on the CPU")
            return DelegateChoice("cpu")
        raise DelegateError(
            f"the Edge TPU is required but {library} could not be loaded"
            f"{' for device ' + device if device else ''} ({exc}). Install libedgetpu1-std, "
            "plug in the Coral accelerator and check it is visible (lsusb, /dev/apex_0)"
            + (
                ""
                if has_cpu_model
                else "; this model is compiled for the Edge TPU and cannot run on the CPU"
            )
        ) from exc
    return DelegateChoice("edgetpu", (delegate,))


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


_EDGETPU_MODEL_ON_CPU = (
    "this model was compiled for the Edge TPU (it contains edgetpu-custom-op) and cannot run "
    "on the CPU; use --delegate edgetpu or auto with a Coral attached, or run the model "
    "from before edgetpu_compiler on the CPU"
)


def _default_loader(library: str, options: dict[str, str]) -> Any:
    from edge_runtime.inference import backend  # deferred: keeps this module library-free

    return backend.load_delegate(library, options)
