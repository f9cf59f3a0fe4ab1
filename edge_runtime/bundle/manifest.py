"""The bundle manifest: its canonical bytes (what is signed) and its strict schema.

A manifest is a JSON object. Signatures are over ``canonical_bytes(manifest)``: keys
sorted, no spaces, UTF-8, no NaN or infinity; ``manifest.json`` in a bundle holds
exactly those bytes. ``parse_manifest`` turns the dict into a frozen ``Manifest`` and
refuses unknown keys, wrong types and out-of-range values, naming the bad field.

Schema 1 (all keys required; ``labels`` and ``golden`` may be null)::

    schema      1
    name        [a-z0-9._-], 1..64 characters
    version     semantic version, e.g. "1.2.0" or "2.0.0-rc.1"
    created     UTC time "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"
    expires     UTC time, after created
    compatible  non-empty list of device classes ([A-Za-z0-9._-]) or ["*"]
    files       {name: {"sha256": 64 lowercase hex, "size": bytes}}; names are flat
                ([A-Za-z0-9][A-Za-z0-9._-]*, no folders), never manifest.json or
                signatures.json
    model       name of the .tflite in files (normally "model.tflite")
    labels      name of the labels file in files, or null
    golden      name of the golden vectors file in files ("golden.npz"), or null
    input       {"shape": [1, H, W, C], "dtype": "int8"|"uint8"|"float32", "scale",
                 "zero_point", "mean", "std" (numbers or null), "resize":
                 "stretch"|"crop"|"letterbox", "color": "RGB"|"BGR"|"L"}
    outputs     {"kind": "classification"|"detection"|"raw", "tensors": [{"name",
                 "role" (null, or for detection "boxes"|"classes"|"scores"|"count"),
                 "shape", "dtype", "scale", "zero_point"}]}
    metrics     free JSON object (the converter's report)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge_runtime.bundle.semver import SemVer
from edge_runtime.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURES_NAME = "signatures.json"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURES_NAME})

NAME_RE = re.compile(r"^[a-z0-9._-]{1,64}$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DEVICE_CLASS_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")

INPUT_DTYPES = ("int8", "uint8", "float32")
TENSOR_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "float16", "float32", "bool")
RESIZE_MODES = ("stretch", "crop", "letterbox")
COLOR_ORDERS = ("RGB", "BGR", "L")
OUTPUT_KINDS = ("classification", "detection", "raw")
DETECTION_ROLES = ("boxes", "classes", "scores", "count")

_TOP_KEYS = frozenset(
    {
        "schema",
        "name",
        "version",
        "created",
        "expires",
        "compatible",
        "files",
        "model",
        "labels",
        "golden",
        "input",
        "outputs",
        "metrics",
    }
)
_INPUT_KEYS = frozenset({"shape", "dtype", "scale", "zero_point", "mean", "std", "resize", "color"})
_OUTPUTS_KEYS = frozenset({"kind", "tensors"})
_TENSOR_KEYS = frozenset({"name", "role", "shape", "dtype", "scale", "zero_point"})
_FILE_KEYS = frozenset({"sha256", "size"})


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


def parse_manifest_bytes(data: bytes) -> tuple[dict[str, Any], Manifest]:
    """Parse ``manifest.json`` bytes, which must be in canonical form.

    Raises:
        BundleError: not JSON, not canonical, or not a valid manifest.
    """
    obj = loads_strict(data, MANIFEST_NAME)
    if not isinstance(obj, dict):
        raise BundleError(f"{MANIFEST_NAME} must hold a JSON object, found {type(obj).__name__}")
    if canonical_bytes(obj) != data:
        raise BundleError(
            f"{MANIFEST_NAME} is not in canonical form (sorted keys, no whitespace, UTF-8); "
            "write bundles with write_bundle"
        )
    return obj, parse_manifest(obj)


# ---- time ------------------------------------------------------------------------------


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


# ---- value types -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class InputDesc:
    shape: tuple[int, int, int, int]
    dtype: str
    scale: float
    zero_point: int
    mean: float | None
    std: float | None
    resize: str
    color: str


@dataclass(frozen=True)
class OutputTensor:
    name: str
    role: str | None
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class OutputsDesc:
    kind: str
    tensors: tuple[OutputTensor, ...]


@dataclass(frozen=True)
class Manifest:
    """A parsed, checked manifest. ``raw`` is the dict it came from (what is signed)."""

    schema: int
    name: str
    version: SemVer
    created: datetime
    expires: datetime
    compatible: tuple[str, ...]
    files: Mapping[str, FileEntry] = field(hash=False)
    model: str
    labels: str | None
    golden: str | None
    input: InputDesc
    outputs: OutputsDesc
    metrics: Mapping[str, Any] = field(hash=False, compare=False)
    raw: Mapping[str, Any] = field(hash=False, compare=False, repr=False)

    @property
    def version_text(self) -> str:
        return str(self.raw["version"])

    def is_compatible(self, device_class: str) -> bool:
        return "*" in self.compatible or device_class in self.compatible


# ---- field checks ----------------------------------------------------------------------


def _keys(obj: Any, allowed: frozenset, where: str) -> Mapping[str, Any]:  # type: ignore[type-arg]
    if not isinstance(obj, dict):
        raise BundleError(f"manifest field {where} must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise BundleError(
            f"manifest field {where} has unknown keys: {', '.join(map(repr, unknown))}"
        )
    missing = sorted(allowed - set(obj))
    if missing:
        raise BundleError(f"manifest field {where} lacks the keys: {', '.join(missing)}")
    return obj


def _int(value: Any, where: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"manifest field {where} must be a whole number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise BundleError(f"manifest field {where} must be in {low}..{high}, got {value}")
    return value


def _float(value: Any, where: str, *, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BundleError(f"manifest field {where} must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise BundleError(f"manifest field {where} must be at least {low}, got {value}")
    return float(value)


def _opt_float(value: Any, where: str) -> float | None:
    return None if value is None else _float(value, where)


def _str(value: Any, where: str, pattern: re.Pattern | None = None) -> str:  # type: ignore[type-arg]
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        hint = f" matching {pattern.pattern}" if pattern is not None else ""
        raise BundleError(f"manifest field {where} must be a string{hint}, got {value!r}")
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BundleError(
            f"manifest field {where} must be one of {', '.join(choices)}, got {value!r}"
        )
    return str(value)


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(
            f"manifest field {where} must be a non-empty list of sizes, got {value!r}"
        )
    return tuple(_int(v, f"{where}[{i}]", low=-1, high=1 << 24) for i, v in enumerate(value))


def check_file_name(name: Any, where: str) -> str:
    """A member name: flat, safe characters, not reserved.

    Raises:
        BundleError: anything else (absolute, ``..``, folders, odd characters).
    """
    if not isinstance(name, str) or not FILE_NAME_RE.match(name) or name in RESERVED_NAMES:
        raise BundleError(
            f"{where}: file name {name!r} is not allowed "
            "(flat names of letters, digits, '.', '_', '-'; "
            "no folders, no '..', not manifest.json or signatures.json)"
        )
    return name


def _files(value: Any) -> dict[str, FileEntry]:
    if not isinstance(value, dict) or not value:
        raise BundleError(
            "manifest field files must be a non-empty object of name -> {sha256, size}"
        )
    out = {}
    for name, entry in value.items():
        check_file_name(name, "manifest field files")
        e = _keys(entry, _FILE_KEYS, f"files[{name!r}]")
        sha = _str(e["sha256"], f"files[{name!r}].sha256", SHA256_RE)
        out[name] = FileEntry(sha, _int(e["size"], f"files[{name!r}].size", low=0))
    return out


def _member_ref(
    value: Any, where: str, files: Mapping[str, FileEntry], *, optional: bool
) -> str | None:
    if value is None and optional:
        return None
    name = _str(value, where)
    if name not in files:
        raise BundleError(f"manifest field {where} names {name!r}, which is not in files")
    return name


def _input(value: Any) -> InputDesc:
    v = _keys(value, _INPUT_KEYS, "input")
    shape = _shape(v["shape"], "input.shape")
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1 or shape[3] not in (1, 3, 4):
        raise BundleError(
            f"manifest field input.shape must be [1, H, W, C] with C 1, 3 or 4, got {list(shape)}"
        )
    std = _opt_float(v["std"], "input.std")
    if std is not None and std <= 0:
        raise BundleError(f"manifest field input.std must be above 0, got {std}")
    return InputDesc(
        shape=(shape[0], shape[1], shape[2], shape[3]),
        dtype=_choice(v["dtype"], "input.dtype", INPUT_DTYPES),
        scale=_float(v["scale"], "input.scale", low=0.0),
        zero_point=_int(v["zero_point"], "input.zero_point", low=-(1 << 31), high=(1 << 31) - 1),
        mean=_opt_float(v["mean"], "input.mean"),
        std=std,
        resize=_choice(v["resize"], "input.resize", RESIZE_MODES),
        color=_choice(v["color"], "input.color", COLOR_ORDERS),
    )


def _outputs(value: Any) -> OutputsDesc:
    v = _keys(value, _OUTPUTS_KEYS, "outputs")
    kind = _choice(v["kind"], "outputs.kind", OUTPUT_KINDS)
    tensors = v["tensors"]
    if not isinstance(tensors, list) or not tensors:
        raise BundleError("manifest field outputs.tensors must be a non-empty list")
    parsed = []
    for i, t in enumerate(tensors):
        where = f"outputs.tensors[{i}]"
        t = _keys(t, _TENSOR_KEYS, where)
        role = t["role"]
        if role is not None:
            role = _str(role, f"{where}.role")
            if kind == "detection":
                _choice(role, f"{where}.role", DETECTION_ROLES)
        parsed.append(
            OutputTensor(
                name=_str(t["name"], f"{where}.name"),
                role=role,
                shape=_shape(t["shape"], f"{where}.shape"),
                dtype=_choice(t["dtype"], f"{where}.dtype", TENSOR_DTYPES),
                scale=_float(t["scale"], f"{where}.scale", low=0.0),
                zero_point=_int(
                    t["zero_point"], f"{where}.zero_point", low=-(1 << 31), high=(1 << 31) - 1
                ),
            )
        )
    roles = [t.role for t in parsed if t.role is not None]
    if len(roles) != len(set(roles)):
        raise BundleError(f"manifest field outputs.tensors gives a role twice: {roles}")
    return OutputsDesc(kind, tuple(parsed))


def _compatible(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(
            'manifest field compatible must be a non-empty list of device classes or ["*"]'
        )
    out = []
    for i, item in enumerate(value):
        if item != "*":
            _str(item, f"compatible[{i}]", DEVICE_CLASS_RE)
        out.append(item)
    return tuple(out)


def parse_manifest(obj: Any) -> Manifest:
    """Check a manifest dict against schema 1 and return it as a frozen ``Manifest``.

    Raises:
        BundleError: the first bad field, by name, with what was expected and found.
    """
    top = _keys(obj, _TOP_KEYS, "(top level)")
    schema = _int(top["schema"], "schema")
    if schema != SCHEMA_VERSION:
        raise BundleError(
            f"manifest schema {schema} is not supported "
            f"(this runtime reads schema {SCHEMA_VERSION})"
        )
    name = _str(top["name"], "name", NAME_RE)
    version = SemVer.parse(_str(top["version"], "version"))
    created = parse_utc(top["created"], "manifest field created")
    expires = parse_utc(top["expires"], "manifest field expires")
    if expires <= created:
        raise BundleError(
            f"manifest field expires ({top['expires']}) must be after created ({top['created']})"
        )
    files = _files(top["files"])
    metrics = top["metrics"]
    if not isinstance(metrics, dict):
        raise BundleError(f"manifest field metrics must be an object, got {type(metrics).__name__}")
    canonical_bytes(metrics)  # refuses NaN/inf anywhere inside
    return Manifest(
        schema=schema,
        name=name,
        version=version,
        created=created,
        expires=expires,
        compatible=_compatible(top["compatible"]),
        files=files,
        model=str(_member_ref(top["model"], "model", files, optional=False)),
        labels=_member_ref(top["labels"], "labels", files, optional=True),
        golden=_member_ref(top["golden"], "golden", files, optional=True),
        input=_input(top["input"]),
        outputs=_outputs(top["outputs"]),
        metrics=metrics,
        raw=obj,
    )
