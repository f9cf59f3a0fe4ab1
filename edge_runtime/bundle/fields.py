"""Typed field checks for the manifest schema: each names the field and what it expected."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from edge_runtime.errors import BundleError


def keys_exactly(
    obj: Any,
    allowed: frozenset,  # type: ignore[type-arg]
    where: str,
    optional: frozenset = frozenset(),  # type: ignore[type-arg]
) -> Mapping[str, Any]:
    """``obj`` is an object holding every key of ``allowed`` and perhaps some of
    ``optional``, nothing else."""
    if not isinstance(obj, dict):
        raise BundleError(f"manifest field {where} must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed - optional)
    if unknown:
        raise BundleError(
            f"manifest field {where} has unknown keys: {', '.join(map(repr, unknown))}"
        )
    missing = sorted(allowed - set(obj))
    if missing:
        raise BundleError(f"manifest field {where} lacks the keys: {', '.join(missing)}")
    return obj


def whole(value: Any, where: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"manifest field {where} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BundleError(f"manifest field {where} must be in {low}..{high}, got {value}")
    return value


def finite(value: Any, where: str, *, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BundleError(f"manifest field {where} must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise BundleError(f"manifest field {where} must be at least {low}, got {value}")
    return float(value)


def opt_finite(value: Any, where: str) -> float | None:
    return None if value is None else finite(value, where)


def text(value: Any, where: str, pattern: re.Pattern | None = None) -> str:  # type: ignore[type-arg]
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        hint = f" matching {pattern.pattern}" if pattern is not None else ""
        raise BundleError(f"manifest field {where} must be a string{hint}, got {value!r}")
    return value


def choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BundleError(
            f"manifest field {where} must be one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(
            f"manifest field {where} must be a non-empty list of sizes, got {value!r}"
        )
    return tuple(whole(v, f"{where}[{i}]", low=-1, high=1 << 24) for i, v in enumerate(value))
