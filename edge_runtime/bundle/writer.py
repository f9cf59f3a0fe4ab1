"""Write ``.edgebundle`` files: an uncompressed, reproducible tar, replaced atomically.

Member order: ``manifest.json`` (canonical bytes), the files in name order, then
``signatures.json``. Every member is a regular file, mode 0644, uid/gid 0, fixed mtime,
USTAR headers: the same inputs give the same bytes.
"""

from __future__ import annotations

import copy
import hashlib
import io
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from edge_runtime.bundle.atomic import PathLike, atomic_writer
from edge_runtime.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURES_NAME,
    canonical_bytes,
    check_file_name,
    parse_manifest,
)
from edge_runtime.bundle.signatures import SignatureLike, signatures_file_bytes
from edge_runtime.errors import BundleError

#: mtime of every member (2020-01-01T00:00:00Z), so bundles are byte-for-byte reproducible.
FIXED_MTIME = 1577836800


def build_manifest(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any]:
    """A copy of ``manifest`` with ``files`` filled from the contents, checked.

    Raises:
        BundleError: a bad file name or a manifest that does not pass ``parse_manifest``.
    """
    out = copy.deepcopy(dict(manifest))
    entries = {}
    for name in sorted(files):
        check_file_name(name, "bundle file")
        data = files[name]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BundleError(f"bundle file {name!r} must be bytes, got {type(data).__name__}")
        entries[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    out["files"] = entries
    parse_manifest(out)
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    tar.addfile(info, io.BytesIO(data))


def write_bundle_to(
    handle: BinaryIO,
    manifest: Mapping[str, Any],
    files: Mapping[str, bytes],
    signatures: Sequence[SignatureLike] = (),
) -> dict[str, Any]:
    """Write the bundle tar to an open binary file; returns the filled manifest."""
    filled = build_manifest(manifest, files)
    sig_bytes = signatures_file_bytes(signatures)
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, MANIFEST_NAME, canonical_bytes(filled))
        for name in sorted(files):
            _add(tar, name, bytes(files[name]))
        _add(tar, SIGNATURES_NAME, sig_bytes)
    return filled


def write_bundle(
    out_path: PathLike,
    manifest: Mapping[str, Any],
    files: Mapping[str, bytes],
    signatures: Sequence[SignatureLike] = (),
) -> Path:
    """Write a bundle atomically to ``out_path`` (0644) and return the path.

    ``manifest["files"]`` is filled from ``files`` (sha256 and size); the caller's dict
    is not changed. ``signatures`` (``Signature`` or ``{"keyid", "sig"}`` dicts) must be
    over ``canonical_bytes`` of the filled manifest; ``sign_bundle`` adds them later.

    Raises:
        BundleError: a bad manifest or file name.
        OSError: the folder is missing or not writable.
    """
    out = Path(out_path)
    build_manifest(manifest, files)  # fail before creating anything
    with atomic_writer(out, mode=0o644) as handle:
        write_bundle_to(handle, manifest, files, signatures)
    return out
