"""Test bundles: a valid manifest, small fake model bytes, and hand-made tar members.

The verifier and the reader never run the model, so a few bytes stand in for it.
"""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edge_runtime.bundle.manifest import canonical_bytes, format_utc
from edge_runtime.bundle.writer import build_manifest, write_bundle

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
MODEL = b"TFL3" + bytes(range(256)) * 4
LABELS = b"zero\none\ntwo\n"


def manifest(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1,
        "name": "digits",
        "version": "1.2.0",
        "created": format_utc(NOW - timedelta(days=1)),
        "expires": format_utc(NOW + timedelta(days=30)),
        "compatible": ["rpi4", "rpi5"],
        "files": {},
        "model": "model.tflite",
        "labels": "labels.txt",
        "golden": None,
        "input": {
            "shape": [1, 8, 8, 1],
            "dtype": "int8",
            "scale": 0.0078125,
            "zero_point": -128,
            "mean": 0.0,
            "std": 255.0,
            "resize": "stretch",
            "color": "L",
        },
        "outputs": {
            "kind": "classification",
            "tensors": [
                {
                    "name": "logits",
                    "role": None,
                    "shape": [1, 3],
                    "dtype": "int8",
                    "scale": 0.00390625,
                    "zero_point": -128,
                }
            ],
        },
        "metrics": {"accuracy_int8": 0.97},
    }
    base.update(copy.deepcopy(overrides))
    return base


def files(model: bytes = MODEL, labels: bytes | None = LABELS) -> dict[str, bytes]:
    out = {"model.tflite": model}
    if labels is not None:
        out["labels.txt"] = labels
    return out


def make_bundle(path: Path, signatures: Iterable[Any] = (), **overrides: Any) -> Path:
    return write_bundle(path, manifest(**overrides), files(), list(signatures))


def filled_manifest(**overrides: Any) -> dict[str, Any]:
    return build_manifest(manifest(**overrides), files())


def raw_tar(
    members: Iterable[tuple[str, bytes]], *, extra: Iterable[tarfile.TarInfo] = ()
) -> bytes:
    """A tar of regular files plus any hand-made headers (links, devices...), no checks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def members_of(
    m: Mapping[str, Any], fs: Mapping[str, bytes], sigs: bytes = b'{"signatures":[]}'
) -> list:  # type: ignore[type-arg]
    """Members in the writer's order: manifest, files by name, signatures."""
    return [("manifest.json", canonical_bytes(m)), *sorted(fs.items()), ("signatures.json", sigs)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def real_clock_times(days: int = 30) -> dict[str, str]:
    """``created``/``expires`` around the real clock, for tests that run the commands."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return {
        "created": format_utc(now - timedelta(hours=1)),
        "expires": format_utc(now + timedelta(days=days)),
    }


def snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root`` with its mode and contents, to prove nothing changed."""
    out: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", str(path.readlink()))
        elif path.is_dir():
            out[rel] = ("dir", path.stat().st_mode)
        else:
            out[rel] = ("file", path.stat().st_mode, path.read_bytes())
    return out
