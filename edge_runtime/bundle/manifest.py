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
                 "zero_point", "mean", "std" (numbers, lists of C numbers for values
                 per channel, or null), "resize":
                 "stretch"|"crop"|"letterbox", "color": "RGB"|"BGR"|"L"}
    outputs     {"kind": "classification"|"detection"|"raw", "tensors": [{"name",
                 "role" (null, or for SSD detection "boxes"|"classes"|"scores"|"count"),
                 "shape", "dtype", "scale", "zero_point"}]}, and for detection
                 optionally "format": "ssd" (the default) | "yolov5" | "yolov8" |
                 "yolo-end2end" (one output tensor, role null) and "box_units":
                 "normalized" (the default) | "pixels"; a manifest without them reads
                 as before, so the converter writes them only for YOLO models
    metrics     free JSON object (the converter's report)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Re-exported: the schema's callers import these from here.
from edge_runtime.bundle.canonical import canonical_bytes as canonical_bytes
from edge_runtime.bundle.canonical import format_utc as format_utc
from edge_runtime.bundle.canonical import loads_strict as loads_strict
from edge_runtime.bundle.canonical import parse_utc as parse_utc
from edge_runtime.bundle.fields import (
    choice,
    finite,
    keys_exactly,
    opt_finite,
    shape,
    text,
    whole,
)
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

INPUT_DTYPES = ("int8", "uint8", "float32")
TENSOR_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "float16", "float32", "bool")
RESIZE_MODES = ("stretch", "crop", "letterbox")
COLOR_ORDERS = ("RGB", "BGR", "L")
OUTPUT_KINDS = ("classification", "detection", "raw")
DETECTION_FORMATS = ("ssd", "yolov5", "yolov8", "yolo-end2end")
BOX_UNITS = ("normalized", "pixels")
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
_OUTPUTS_OPTIONAL = frozenset({"format", "box_units"})
_TENSOR_KEYS = frozenset({"name", "role", "shape", "dtype", "scale", "zero_point"})
_FILE_KEYS = frozenset({"sha256", "size"})


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
    mean: float | tuple[float, ...] | None  # a tuple: one per channel
    std: float | tuple[float, ...] | None
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
    format: str | None = None  # detection layout; None (absent) reads as "ssd"
    box_units: str | None = None  # YOLO box coordinates; None reads as "normalized"


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
        e = keys_exactly(entry, _FILE_KEYS, f"files[{name!r}]")
        sha = text(e["sha256"], f"files[{name!r}].sha256", SHA256_RE)
        out[name] = FileEntry(sha, whole(e["size"], f"files[{name!r}].size", low=0))
    return out


def _member_ref(
    value: Any, where: str, files: Mapping[str, FileEntry], *, optional: bool
) -> str | None:
    if value is None and optional:
        return None
    name = text(value, where)
    if name not in files:
        raise BundleError(f"manifest field {where} names {name!r}, which is not in files")
    return name


def _input(value: Any) -> InputDesc:
    v = keys_exactly(value, _INPUT_KEYS, "input")
    dims = shape(v["shape"], "input.shape")
    if len(dims) != 4 or dims[0] != 1 or min(dims) < 1 or dims[3] not in (1, 3, 4):
        raise BundleError(
            f"manifest field input.shape must be [1, H, W, C] with C 1, 3 or 4, got {list(dims)}"
        )
    mean = _channel_numbers(v["mean"], "input.mean", dims[3])
    std = _channel_numbers(v["std"], "input.std", dims[3])
    if std is not None and min(std if isinstance(std, tuple) else (std,)) <= 0:
        raise BundleError(f"manifest field input.std must be above 0, got {v['std']}")
    return InputDesc(
        shape=(dims[0], dims[1], dims[2], dims[3]),
        dtype=choice(v["dtype"], "input.dtype", INPUT_DTYPES),
        scale=finite(v["scale"], "input.scale", low=0.0),
        zero_point=whole(v["zero_point"], "input.zero_point", low=-(1 << 31), high=(1 << 31) - 1),
        mean=mean,
        std=std,
        resize=choice(v["resize"], "input.resize", RESIZE_MODES),
        color=choice(v["color"], "input.color", COLOR_ORDERS),
    )


def _channel_numbers(value: Any, where: str, channels: int) -> float | tuple[float, ...] | None:
    """A number, null, or a list of one number per channel."""
    if not isinstance(value, list):
        return opt_finite(value, where)
    if len(value) != channels:
        raise BundleError(
            f"manifest field {where} must be a number or a list of {channels} numbers "
            f"(one per channel), got {value!r}"
        )
    return tuple(finite(v, f"{where}[{i}]") for i, v in enumerate(value))


def _outputs(value: Any) -> OutputsDesc:
    v = keys_exactly(value, _OUTPUTS_KEYS, "outputs", _OUTPUTS_OPTIONAL)
    kind = choice(v["kind"], "outputs.kind", OUTPUT_KINDS)
    fmt = v.get("format")
    units = v.get("box_units")
    if fmt is not None:
        if kind != "detection":
            raise BundleError(f"manifest field outputs.format is for detection, kind is {kind}")
        choice(fmt, "outputs.format", DETECTION_FORMATS)
    if units is not None:
        choice(units, "outputs.box_units", BOX_UNITS)
    yolo = fmt not in (None, "ssd")
    tensors = v["tensors"]
    if not isinstance(tensors, list) or not tensors:
        raise BundleError("manifest field outputs.tensors must be a non-empty list")
    parsed = []
    for i, t in enumerate(tensors):
        where = f"outputs.tensors[{i}]"
        t = keys_exactly(t, _TENSOR_KEYS, where)
        role = t["role"]
        if role is not None:
            role = text(role, f"{where}.role")
            if kind == "detection" and not yolo:
                choice(role, f"{where}.role", DETECTION_ROLES)
        parsed.append(
            OutputTensor(
                name=text(t["name"], f"{where}.name"),
                role=role,
                shape=shape(t["shape"], f"{where}.shape"),
                dtype=choice(t["dtype"], f"{where}.dtype", TENSOR_DTYPES),
                scale=finite(t["scale"], f"{where}.scale", low=0.0),
                zero_point=whole(
                    t["zero_point"], f"{where}.zero_point", low=-(1 << 31), high=(1 << 31) - 1
                ),
            )
        )
    roles = [t.role for t in parsed if t.role is not None]
    if len(roles) != len(set(roles)):
        raise BundleError(f"manifest field outputs.tensors gives a role twice: {roles}")
    if yolo and len(parsed) != 1:
        raise BundleError(
            f"manifest field outputs.tensors: a {fmt} model has one output, got {len(parsed)}"
        )
    return OutputsDesc(kind, tuple(parsed), fmt, units)


def _compatible(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BundleError(
            'manifest field compatible must be a non-empty list of device classes or ["*"]'
        )
    out = []
    for i, item in enumerate(value):
        if item != "*":
            text(item, f"compatible[{i}]", DEVICE_CLASS_RE)
        out.append(item)
    return tuple(out)


def parse_manifest(obj: Any) -> Manifest:
    """Check a manifest dict against schema 1 and return it as a frozen ``Manifest``.

    Raises:
        BundleError: the first bad field, by name, with what was expected and found.
    """
    top = keys_exactly(obj, _TOP_KEYS, "(top level)")
    schema = whole(top["schema"], "schema")
    if schema != SCHEMA_VERSION:
        raise BundleError(
            f"manifest schema {schema} is not supported "
            f"(this runtime reads schema {SCHEMA_VERSION})"
        )
    name = text(top["name"], "name", NAME_RE)
    version = SemVer.parse(text(top["version"], "version"))
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
