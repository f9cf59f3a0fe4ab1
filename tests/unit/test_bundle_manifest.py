"""Manifest schema, canonical bytes and semantic versions."""

from __future__ import annotations

from typing import Any

import bundle_factory as bf
import pytest

from edge_runtime.bundle.manifest import canonical_bytes, parse_manifest, parse_manifest_bytes
from edge_runtime.bundle.semver import SemVer
from edge_runtime.errors import BundleError


def test_canonical_bytes_sorted_compact_utf8() -> None:
    assert canonical_bytes({"b": 1, "a": ["é", 2.5, None]}) == '{"a":["é",2.5,null],"b":1}'.encode()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_canonical_bytes_refuses_nan_and_infinity(bad: float) -> None:
    with pytest.raises(BundleError, match="NaN or infinity"):
        canonical_bytes({"metrics": {"x": bad}})


def test_manifest_parses_into_frozen_value() -> None:
    m = parse_manifest(bf.filled_manifest())
    assert m.name == "digits" and m.version == SemVer.parse("1.2.0")
    assert m.files["model.tflite"].size == len(bf.MODEL)
    assert m.input.shape == (1, 8, 8, 1) and m.input.color == "L"
    assert m.outputs.kind == "classification" and m.outputs.tensors[0].name == "logits"
    assert m.is_compatible("rpi4") and not m.is_compatible("rpi3")
    with pytest.raises(AttributeError):
        m.name = "other"  # type: ignore[misc]


def _set(path: str, value: Any) -> Any:
    m = bf.filled_manifest()
    *parents, last = path.split(".")
    target = m
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return m


@pytest.mark.parametrize(
    "path, value, fragment",
    [
        ("schema", 2, "schema 2 is not supported"),
        ("name", "Digits!", "field name"),
        ("name", "x" * 65, "field name"),
        ("version", "1.2", "semantic version"),
        ("version", "01.2.0", "semantic version"),
        ("created", "2026-01-01 00:00:00", "UTC time"),
        ("expires", "2026-01-01T00:00:00+02:00", "UTC time"),
        ("expires", "2020-01-01T00:00:00Z", "must be after created"),
        ("compatible", [], "compatible"),
        ("compatible", ["rpi 4"], "compatible[0]"),
        ("model", "missing.tflite", "not in files"),
        ("labels", 3, "field labels"),
        ("input.shape", [8, 8, 1], "input.shape"),
        ("input.dtype", "int16", "input.dtype"),
        ("input.std", 0, "input.std"),
        ("input.scale", True, "input.scale"),
        ("input.zero_point", 1.5, "input.zero_point"),
        ("input.resize", "squash", "input.resize"),
        ("input.color", "RGBA", "input.color"),
        ("input.mean", KeyError, "input lacks the keys: mean"),
        ("outputs.kind", "segmentation", "outputs.kind"),
        ("outputs.tensors", [], "outputs.tensors"),
        ("metrics", [], "metrics must be an object"),
        ("surprise", 1, "unknown keys: 'surprise'"),
        ("golden", KeyError, "lacks the keys: golden"),
    ],
)
def test_manifest_names_the_bad_field(path: str, value: Any, fragment: str) -> None:
    with pytest.raises(BundleError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_manifest(_set(path, value))


def test_detection_roles_are_checked() -> None:
    m = bf.filled_manifest()
    t = m["outputs"]["tensors"][0]
    m["outputs"] = {"kind": "detection", "tensors": [dict(t, role="boxes"), dict(t, role="boxes")]}
    with pytest.raises(BundleError, match="role twice"):
        parse_manifest(m)
    m["outputs"]["tensors"][1]["role"] = "masks"
    with pytest.raises(BundleError, match="role must be one of boxes"):
        parse_manifest(m)


@pytest.mark.parametrize(
    "name", ["../model.tflite", "/model.tflite", "a/b", "manifest.json", ".hidden", ""]
)
def test_file_names_must_be_flat_and_safe(name: str) -> None:
    m = bf.filled_manifest()
    m["files"][name] = m["files"]["labels.txt"]
    with pytest.raises(BundleError, match="is not allowed"):
        parse_manifest(m)


def test_manifest_bytes_must_be_canonical_and_without_duplicate_keys() -> None:
    m = bf.filled_manifest()
    data = canonical_bytes(m)
    assert parse_manifest_bytes(data)[0] == m
    with pytest.raises(BundleError, match="canonical form"):
        parse_manifest_bytes(data.replace(b'{"accuracy_int8"', b'{ "accuracy_int8"'))
    with pytest.raises(BundleError, match="key 'name' twice"):
        parse_manifest_bytes(data.replace(b'"name":"digits"', b'"name":"digits","name":"evil"'))
    with pytest.raises(BundleError, match="only finite numbers"):
        parse_manifest_bytes(data.replace(b"0.97", b"NaN"))


def test_semver_precedence_including_pre_releases() -> None:
    order = [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    parsed = [SemVer.parse(v) for v in order]
    assert sorted(reversed(parsed)) == parsed
    assert all(a < b for a, b in zip(parsed, parsed[1:]))
    assert SemVer.parse("1.0.0+build.1") == SemVer.parse("1.0.0+build.2")
    assert str(SemVer.parse("1.2.3-rc.1+b5")) == "1.2.3-rc.1+b5"


@pytest.mark.parametrize(
    "bad", ["1", "1.2", "1.2.3.4", "v1.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "", "1.2.3-a..b"]
)
def test_semver_refuses_malformed(bad: str) -> None:
    with pytest.raises(BundleError):
        SemVer.parse(bad)
