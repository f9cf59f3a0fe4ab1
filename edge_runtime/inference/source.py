"""A model on disk, resolved: a ``.tflite`` file or an ``.edgebundle``.

Gathers what the engine needs before any interpreter exists: the model bytes (and, from
a bundle, an uncompiled CPU form next to an Edge TPU one), the labels in their order of
precedence, the manifest's input and output descriptions, and the model's identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_runtime.errors import BundleError, ModelError
from edge_runtime.inference.labels import Labels, embedded_labels, parse_labels, read_labels_file
from edge_runtime.inference.modelfile import (
    ModelFile,
    embedded_files,
    looks_like_tflite,
    read_model,
)
from edge_runtime.inference.types import ModelIdentity

#: Largest model file read into memory (the biggest Edge TPU models are ~40 MB).
MAX_MODEL_BYTES = 512 * 1024 * 1024
CPU_MODEL_MEMBER = "model_cpu.tflite"


@dataclass(frozen=True)
class ModelSource:
    path: Path
    content: bytes
    model_file: ModelFile
    identity: ModelIdentity
    labels: Labels | None = None
    labels_source: str | None = None
    cpu_content: bytes | None = None  # uncompiled form, when ``content`` is for the Edge TPU
    manifest: Mapping[str, Any] | None = None  # the bundle's manifest, as a dict
    golden: bytes | None = None  # golden.npz from the bundle


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ModelError(f"model file not found: {path}") from exc
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    if path.is_dir():
        raise ModelError(f"{path} is a folder; expected a .tflite file or an .edgebundle")
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{path} is {size} bytes; models over {MAX_MODEL_BYTES} bytes are refused")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc


def load_source(path: Path, *, labels_path: Path | None = None) -> ModelSource:
    """Resolve ``path`` (``.tflite`` or bundle) and its labels.

    Labels come from ``labels_path``, else the bundle, else the model's embedded files.

    Raises:
        ModelError: missing, unreadable, or not a model or bundle.
        BundleError: a bundle that fails its own integrity checks.
        LabelsError: an unreadable labels file.
    """
    path = Path(path)
    data = _read_file(path)
    if looks_like_tflite(data):
        try:
            source = _from_tflite(path, data)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from exc
    elif _looks_like_tar(data):
        source = _from_bundle(path)
    else:
        raise ModelError(
            f"{path} is neither a TFLite model (no 'TFL3' identifier) "
            "nor an .edgebundle (not a tar)"
        )
    if labels_path is not None:
        source = _with_labels(source, read_labels_file(labels_path), f"labels file {labels_path}")
    return source


def _with_labels(source: ModelSource, labels: Labels, origin: str) -> ModelSource:
    return replace(source, labels=labels, labels_source=origin)


def _from_tflite(path: Path, data: bytes) -> ModelSource:
    model_file = read_model(data)
    labels = embedded_labels(model_file, embedded_files(data))
    identity = ModelIdentity(
        name=model_file.metadata.name or path.stem,
        version=model_file.metadata.version,
        sha256=sha256_hex(data),
    )
    return ModelSource(
        path=path,
        content=data,
        model_file=model_file,
        identity=identity,
        labels=labels,
        labels_source=f"labels embedded in {path.name}" if labels else None,
    )


def _looks_like_tar(data: bytes) -> bool:
    return len(data) >= 512 and data[257:262] == b"ustar"


def _from_bundle(path: Path) -> ModelSource:
    from edge_runtime.bundle.reader import open_model_bundle  # bundles are the rarer case

    contents = open_model_bundle(path)
    manifest = contents.manifest_dict
    files = contents.files
    model_name = manifest.get("model", "model.tflite")
    if model_name not in files:
        raise BundleError(f"bundle {path} has no model file {model_name!r}")
    data = files[model_name]
    model_file = read_model(data)
    labels = None
    labels_name = manifest.get("labels")
    if labels_name:
        labels = parse_labels(files[labels_name].decode("utf-8", errors="replace"))
    labels_source = f"bundle {path.name}" if labels else None
    if labels is None:
        labels = embedded_labels(model_file, embedded_files(data))
        labels_source = f"labels embedded in {path.name}" if labels else None
    golden_name = manifest.get("golden")
    # the reader hashed every file while reading and checked it against the manifest
    digest = contents.manifest.files[model_name].sha256
    identity = ModelIdentity(str(manifest["name"]), str(manifest["version"]), digest)
    return ModelSource(
        path=path,
        content=data,
        model_file=model_file,
        identity=identity,
        labels=labels,
        labels_source=labels_source,
        cpu_content=files.get(CPU_MODEL_MEMBER),
        manifest=manifest,
        golden=files.get(golden_name) if golden_name else None,
    )
