"""Canonical JSON (the bytes that are signed), strict JSON parsing, and UTC times.

Shared by bundle manifests, signature lists, trust files and the version record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from edge_runtime.errors import BundleError

_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, UTF-8, finite numbers only.

    Raises:
        BundleError: the value holds NaN/infinity or something JSON cannot carry.
    """
    try:
        text = json.dumps(
            manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:
        raise BundleError(
            f"manifest holds a number JSON cannot carry (NaN or infinity): {exc}"
        ) from exc
    except TypeError as exc:
        raise BundleError(f"manifest holds a value JSON cannot carry: {exc}") from exc
    return text.encode("utf-8")


def _no_duplicates(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BundleError(f"JSON object has the key {key!r} twice")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise BundleError(f"JSON holds {name}; only finite numbers are allowed")


def loads_strict(data: bytes, what: str) -> Any:
    """Parse JSON bytes, refusing duplicate keys, NaN/Infinity and bad UTF-8.

    Raises:
        BundleError: not valid strict JSON (the message names ``what``).
    """
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except BundleError as exc:
        raise BundleError(f"{what}: {exc}") from exc
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{what} is not valid JSON: {exc}") from exc


def format_utc(moment: datetime) -> str:
    """``2026-01-31T12:00:00Z`` (microseconds only when present)."""
    if moment.tzinfo is None:
        raise ValueError("format_utc needs a timezone-aware datetime")
    moment = moment.astimezone(timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return moment.strftime(fmt)


def parse_utc(text: Any, what: str) -> datetime:
    """Parse a UTC ISO 8601 time ending in ``Z``.

    Raises:
        BundleError: not in that form (the message names ``what``).
    """
    if not isinstance(text, str) or not _UTC_RE.match(text):
        raise BundleError(f"{what} must be a UTC time like 2026-01-31T12:00:00Z, got {text!r}")
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise BundleError(f"{what} is not a valid time: {text!r} ({exc})") from exc
