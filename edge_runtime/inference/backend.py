"""The only module that imports an interpreter library.

``ai_edge_litert`` (numpy 2, runs beside TensorFlow) is preferred; ``tflite_runtime``
(numpy < 2, also on 32-bit ARM) is the fallback. ``EDGE_RUNTIME_BACKEND=litert|tflite``
forces one, which is how benchmarks compare them. Library errors are translated here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from edge_runtime.errors import BackendError, DelegateError, ModelError

BACKENDS: tuple[tuple[str, str, str], ...] = (
    # name, module, extra that installs it
    ("litert", "ai_edge_litert.interpreter", "litert"),
    ("tflite", "tflite_runtime.interpreter", "tflite"),
)

Interpreter = Any  # the library's Interpreter object; its API is the same in both


@dataclass(frozen=True)
class Backend:
    name: str
    module: ModuleType

    @property
    def version(self) -> str:
        package = importlib.import_module(self.module.__name__.split(".")[0])
        return str(getattr(package, "__version__", "unknown"))


_cache: dict[str, Backend] = {}


def get_backend(name: str | None = None) -> Backend:
    """The interpreter library to use: ``name``, ``$EDGE_RUNTIME_BACKEND``, or the first
    one installed.

    Raises:
        BackendError: the requested library (or, with no request, either) is missing.
    """
    wanted = name or os.environ.get("EDGE_RUNTIME_BACKEND") or None
    known = {b[0] for b in BACKENDS}
    if wanted is not None and wanted not in known:
        raise BackendError(
            f"unknown backend {wanted!r}; expected one of {', '.join(sorted(known))}"
        )
    key = wanted or "*"
    if key in _cache:
        return _cache[key]
    failures = []
    for backend_name, module_name, extra in BACKENDS:
        if wanted is not None and backend_name != wanted:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            failures.append(
                f"{module_name} ({exc}); install with pip install 'edge-runtime[{extra}]'"
            )
            continue
        _cache[key] = Backend(backend_name, module)
        return _cache[key]
    raise BackendError(
        "no TFLite interpreter library could be imported: "
        + "; ".join(failures)
        + ". Use the 'litert' extra (ai-edge-litert) on aarch64/x86-64, "
        "or the 'tflite' extra (tflite-runtime with numpy<2) on 32-bit ARM."
    )


def make_interpreter(
    model_content: bytes,
    *,
    num_threads: int | None = None,
    delegates: Sequence[Any] = (),
    backend: Backend | None = None,
    before_native: Callable[[], object] | None = None,
) -> Interpreter:
    """Create an interpreter for ``model_content`` and allocate its tensors.

    ``before_native`` is called before each of the two steps, which hold the GIL for
    milliseconds (``allocate_tensors`` packs the weights): a serving process can wait
    there for a moment when its other threads need no GIL.

    Raises:
        ModelError: the library refuses the model (not a model, unsupported op, ...).
        BackendError: the library itself cannot run (e.g. tflite-runtime under numpy 2).
    """
    backend = backend or get_backend()
    try:
        with _native_stderr_filtered():
            if before_native is not None:
                before_native()
            interpreter = backend.module.Interpreter(
                model_content=model_content,
                num_threads=num_threads,
                experimental_delegates=list(delegates) or None,
            )
            if before_native is not None:
                before_native()
            interpreter.allocate_tensors()
    except ValueError as exc:
        raise ModelError(
            f"the {backend.name} interpreter cannot load this model: {_first_line(exc)}"
        ) from exc
    except RuntimeError as exc:
        raise ModelError(
            f"the {backend.name} interpreter failed to prepare the model: {_first_line(exc)}"
        ) from exc
    except (ImportError, AttributeError, TypeError) as exc:
        raise BackendError(
            f"the {backend.name} interpreter library is broken here: {_first_line(exc)}"
        ) from exc
    return interpreter


def load_delegate(
    library: str, options: dict[str, str] | None = None, *, backend: Backend | None = None
) -> Any:
    """Load an external delegate (the Edge TPU's ``libedgetpu.so.1``).

    Raises:
        DelegateError: the library is missing or refuses to start (no device attached).
    """
    backend = backend or get_backend()
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_failed_delegate(previous_hook)
    try:
        try:
            return backend.module.load_delegate(library, options or {})
        except (OSError, ValueError, RuntimeError) as exc:
            message = _first_line(exc)
        # Leaving the except block frees the half-built Delegate; its __del__ in some
        # library versions raises AttributeError, which the hook above keeps quiet.
    finally:
        sys.unraisablehook = previous_hook
    raise DelegateError(f"cannot load {library}: {message}")


def _quiet_failed_delegate(previous: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def hook(unraisable: Any) -> None:
        where = getattr(unraisable.object, "__qualname__", "")
        if isinstance(unraisable.exc_value, AttributeError) and where.endswith("Delegate.__del__"):
            return
        previous(unraisable)

    return hook


#: Lines the interpreter libraries print on every start, dropped from stderr so that a
#: command's error stays the one line it should be.
_NOISE = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Capture what native code writes to fd 2 meanwhile; pass on all but the noise."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().splitlines(keepends=True)
                if line.strip() not in _NOISE
            ]
            if kept:
                os.write(2, b"".join(kept))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
