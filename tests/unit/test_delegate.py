"""Edge TPU delegate choice: absent library, auto fallback, Edge TPU models on the CPU.

There is no Edge TPU here: the real loader is used where the library is absent, and a
fake loader stands in where a present library must be simulated.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edge_runtime.errors import ConfigError, DelegateError
from edge_runtime.inference import delegate


class FakeLoader:
    """Records calls; ``present`` decides whether the library 'loads'."""

    def __init__(self, present: bool) -> None:
        self.present = present
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, library: str, options: dict[str, str]) -> Any:
        self.calls.append((library, options))
        if not self.present:
            raise DelegateError(f"cannot load {library}: not found")
        return object()


def test_real_library_is_absent_here_and_edgetpu_mode_says_so() -> None:
    with pytest.raises(DelegateError, match="libedgetpu.so.1 could not be loaded.*libedgetpu1-std"):
        delegate.choose("edgetpu", model_is_edgetpu=True)


def test_auto_with_a_cpu_model_never_touches_the_library() -> None:
    loader = FakeLoader(present=True)
    assert delegate.choose("auto", model_is_edgetpu=False, loader=loader).name == "cpu"
    assert loader.calls == []


def test_auto_uses_the_edgetpu_when_present_with_device_option() -> None:
    loader = FakeLoader(present=True)
    choice = delegate.choose("auto", model_is_edgetpu=True, device="usb:1", loader=loader)
    assert choice.name == "edgetpu" and len(choice.delegates) == 1
    assert loader.calls == [("libedgetpu.so.1", {"device": "usb:1"})]


def test_auto_falls_back_to_the_cpu_model_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delegate._warned.clear()
    loader = FakeLoader(present=False)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            choice = delegate.choose(
                "auto", model_is_edgetpu=True, cpu_model_available=True, loader=loader
            )
            assert choice.name == "cpu" and choice.delegates == ()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "running on the CPU" in warnings[0].getMessage()


def test_auto_real_loader_falls_back_when_library_is_absent() -> None:
    delegate._warned.clear()
    choice = delegate.choose("auto", model_is_edgetpu=True, cpu_model_available=True)
    assert choice.name == "cpu"


def test_edgetpu_model_without_cpu_form_cannot_fall_back() -> None:
    with pytest.raises(DelegateError, match="compiled for the Edge TPU and cannot run on the CPU"):
        delegate.choose("auto", model_is_edgetpu=True, loader=FakeLoader(present=False))


def test_cpu_mode_refuses_an_edgetpu_model_and_says_why() -> None:
    loader = FakeLoader(present=True)
    with pytest.raises(DelegateError, match="contains edgetpu-custom-op"):
        delegate.choose("cpu", model_is_edgetpu=True, loader=loader)
    assert loader.calls == []
    assert delegate.choose("cpu", model_is_edgetpu=True, cpu_model_available=True).name == "cpu"


def test_edgetpu_mode_refuses_an_uncompiled_model() -> None:
    with pytest.raises(DelegateError, match="needs a model compiled by edgetpu_compiler"):
        delegate.choose("edgetpu", model_is_edgetpu=False, loader=FakeLoader(present=True))


def test_edgetpu_mode_with_library_present() -> None:
    choice = delegate.choose(
        "edgetpu", model_is_edgetpu=True, device="pci:0", loader=FakeLoader(True)
    )
    assert choice.name == "edgetpu"


@pytest.mark.parametrize("device", ["usb", "usb:0", "pci", "pci:3"])
def test_valid_devices(device: str) -> None:
    assert delegate.check_device(device) == device


@pytest.mark.parametrize("bad", ["usb:", "gpu", "usb:x", "pci:-1"])
def test_bad_device_and_mode(bad: str) -> None:
    with pytest.raises(ConfigError, match="not one of usb, usb:N, pci, pci:N"):
        delegate.check_device(bad)
    with pytest.raises(ConfigError, match="not one of auto, cpu, edgetpu"):
        delegate.choose("tpu", model_is_edgetpu=False)
