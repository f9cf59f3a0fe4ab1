"""The safe bundle reader: streams a tar once, checking everything as it goes.

Refused, with nothing left behind: a first member other than ``manifest.json``; links,
devices, fifos, folders; absolute names, ``..``, folders in names; duplicate names; a
file the manifest does not name (mix-and-match) or one it names that is missing; a size
or sha256 that differs from the manifest (hashed while reading, never taken from a tar
header alone); more members or bytes than ``BundleLimits`` allow (counted on the bytes
actually read, so an endless stream stops at the cap); an archive that ends before its
end-of-archive marker (truncated).

This module checks integrity against the manifest only; signatures, expiry, version and
compatibility are ``edge_runtime.trust.verifier``'s job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

from edge_runtime.bundle.atomic import fsync_dir
from edge_runtime.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURES_NAME,
    Manifest,
    parse_manifest_bytes,
)
from edge_runtime.bundle.signatures import Signature, parse_signatures_file
from edge_runtime.bundle.sinks import DirSink, MemorySink, NullSink, Sink
from edge_runtime.bundle.tarstream import BLOCK, ZERO_BLOCK, CappedStream, padding, parse_header
from edge_runtime.errors import BundleError, IntegrityError, SizeLimitError

Source = Union[str, "os.PathLike[str]", BinaryIO]


@dataclass(frozen=True)
class BundleLimits:
    """Caps on what a bundle may make the reader take in (bytes actually read)."""

    max_total_bytes: int = 600 * 1024 * 1024
    max_member_bytes: int = 512 * 1024 * 1024
    max_members: int = 32
    max_manifest_bytes: int = 1024 * 1024
    max_signatures_bytes: int = 64 * 1024


DEFAULT_LIMITS = BundleLimits()


@dataclass(frozen=True)
class BundleMeta:
    """What every read gives: the manifest (bytes, dict, parsed) and the signatures."""

    manifest_bytes: bytes
    manifest_dict: Mapping[str, Any] = field(repr=False)
    manifest: Manifest
    signatures: tuple[Signature, ...]


@dataclass(frozen=True)
class BundleContents(BundleMeta):
    """A bundle read into memory; ``files`` maps member name to its checked bytes."""

    files: Mapping[str, bytes] = field(repr=False)


@dataclass(frozen=True)
class StagedBundle(BundleMeta):
    """A bundle written into ``folder``: every member, including manifest and signatures."""

    folder: Path

    def path(self, name: str) -> Path:
        if name not in self.manifest.files and name not in (MANIFEST_NAME, SIGNATURES_NAME):
            raise BundleError(f"staged bundle has no file {name!r}")
        return self.folder / name

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.folder / name for name in self.manifest.files}


@contextlib.contextmanager
def _opened(source: Source) -> Iterator[BinaryIO]:
    if not isinstance(source, (str, os.PathLike)):
        yield source
        return
    try:
        fd = os.open(source, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise BundleError(f"bundle file not found: {source}") from exc
    except OSError as exc:
        raise BundleError(f"cannot open bundle {source}: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        yield handle


def _check_declared(manifest: Manifest, limits: BundleLimits) -> None:
    total = 0
    for name, entry in manifest.files.items():
        if entry.size > limits.max_member_bytes:
            raise SizeLimitError(
                f"manifest declares {name} of {entry.size} bytes; the cap per file is "
                f"{limits.max_member_bytes}; refused"
            )
        total += entry.size
    if total > limits.max_total_bytes:
        raise SizeLimitError(
            f"manifest declares {total} bytes of files; "
            f"the bundle cap is {limits.max_total_bytes}; refused"
        )
    if len(manifest.files) + 2 > limits.max_members:
        raise SizeLimitError(
            f"manifest names {len(manifest.files)} files; at most {limits.max_members - 2} allowed"
        )


def _read_small(stream: CappedStream, name: str, size: int, cap: int) -> bytes:
    if size > cap:
        raise SizeLimitError(f"{name} is {size} bytes; the cap is {cap}; refused")
    data = stream.read_exact(size, name)
    stream.read_exact(padding(size), f"padding of {name}")
    return data


def _copy_file(
    stream: CappedStream, name: str, size: int, manifest: Manifest, limits: BundleLimits, sink: Sink
) -> None:
    entry = manifest.files.get(name)
    if entry is None:
        raise BundleError(
            f"bundle holds {name!r}, which the manifest does not name (mix-and-match); refused"
        )
    if size > limits.max_member_bytes:
        raise SizeLimitError(
            f"{name} is {size} bytes; the cap per file is {limits.max_member_bytes}; refused"
        )
    if size != entry.size:
        raise IntegrityError(
            f"{name} is {size} bytes in the tar; the manifest says {entry.size}; refused"
        )
    digest = hashlib.sha256()
    sink.begin(name)
    for chunk in stream.iter_exact(size, name):
        digest.update(chunk)
        sink.write(chunk)
    if digest.hexdigest() != entry.sha256:
        raise IntegrityError(
            f"{name}: sha256 {digest.hexdigest()[:16]}... differs from the manifest's "
            f"{entry.sha256[:16]}...; the file was altered; refused"
        )
    sink.end()
    stream.read_exact(padding(size), f"padding of {name}")


def _read(
    raw: BinaryIO, limits: BundleLimits, sink: Sink, expected_manifest: bytes | None
) -> BundleMeta:
    stream = CappedStream(raw, limits.max_total_bytes)
    seen: set = set()  # type: ignore[type-arg]
    parsed: tuple[bytes, dict[str, Any], Manifest] | None = None
    signatures: tuple[Signature, ...] | None = None
    while True:
        header = parse_header(stream.read_exact(BLOCK, "a tar header"))
        if header is None:
            if stream.read_exact(BLOCK, "the end-of-archive marker") != ZERO_BLOCK:
                raise BundleError("bundle has a zero block in the middle of the archive; refused")
            break
        if len(seen) + 1 > limits.max_members:
            raise SizeLimitError(f"bundle has more than {limits.max_members} members; refused")
        if header.name in seen:
            raise BundleError(f"bundle holds {header.name!r} twice; refused")
        seen.add(header.name)
        if parsed is None:
            if header.name != MANIFEST_NAME:
                raise BundleError(
                    f"first member of a bundle must be {MANIFEST_NAME}, found {header.name!r}"
                )
            data = _read_small(stream, MANIFEST_NAME, header.size, limits.max_manifest_bytes)
            if expected_manifest is not None and data != expected_manifest:
                raise BundleError(
                    f"{MANIFEST_NAME} differs from the manifest that was announced "
                    "and verified; refused"
                )
            manifest_dict, manifest = parse_manifest_bytes(data)
            _check_declared(manifest, limits)
            parsed = (data, manifest_dict, manifest)
            sink.whole(MANIFEST_NAME, data)
        elif header.name == SIGNATURES_NAME:
            data = _read_small(stream, SIGNATURES_NAME, header.size, limits.max_signatures_bytes)
            signatures = parse_signatures_file(data)
            sink.whole(SIGNATURES_NAME, data)
        else:
            _copy_file(stream, header.name, header.size, parsed[2], limits, sink)
    if parsed is None:
        raise BundleError(f"bundle is empty: no {MANIFEST_NAME}")
    missing = sorted(set(parsed[2].files) - seen)
    if missing:
        raise BundleError(f"bundle lacks files its manifest names: {', '.join(missing)}; refused")
    if signatures is None:
        raise BundleError(f"bundle has no {SIGNATURES_NAME}")
    return BundleMeta(parsed[0], parsed[1], parsed[2], signatures)


def read_bundle(
    source: Source, *, limits: BundleLimits = DEFAULT_LIMITS, expected_manifest: bytes | None = None
) -> BundleContents:
    """Read a bundle (path or binary stream) into memory, checking every file.

    ``expected_manifest``: canonical manifest bytes already verified (e.g. from an update
    announcement); the bundle's ``manifest.json`` must be exactly these bytes.

    Raises:
        BundleError: malformed, unsafe, truncated, or files missing or extra.
        IntegrityError: a size or sha256 differs from the manifest.
        SizeLimitError: a cap in ``limits`` was reached.
    """
    sink = MemorySink()
    with _opened(source) as raw:
        meta = _read(raw, limits, sink, expected_manifest)
    return BundleContents(
        meta.manifest_bytes, meta.manifest_dict, meta.manifest, meta.signatures, sink.files
    )


def scan_bundle(
    source: Source, *, limits: BundleLimits = DEFAULT_LIMITS, expected_manifest: bytes | None = None
) -> BundleMeta:
    """Check a bundle like ``read_bundle`` but keep no file contents (constant memory)."""
    with _opened(source) as raw:
        return _read(raw, limits, NullSink(), expected_manifest)


def stage_bundle(
    source: Source,
    staging_dir: str | os.PathLike[str],
    limits: BundleLimits = DEFAULT_LIMITS,
    *,
    expected_manifest: bytes | None = None,
) -> StagedBundle:
    """Read a bundle into ``staging_dir``, which must not exist yet (it is made 0700).

    Every member lands in that folder and nowhere else; on any failure the folder is
    removed. The caller owns the folder afterwards (install it, or remove it).

    Raises:
        BundleError, IntegrityError, SizeLimitError: as ``read_bundle``; BundleError also
            when ``staging_dir`` exists already or cannot be made.
    """
    folder = Path(staging_dir)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError as exc:
        raise BundleError(f"staging folder {folder} exists already; use a fresh one") from exc
    except OSError as exc:
        raise BundleError(f"cannot make staging folder {folder}: {exc}") from exc
    sink = DirSink(folder)
    try:
        with _opened(source) as raw:
            meta = _read(raw, limits, sink, expected_manifest)
        sink.finish()
        fsync_dir(folder)
    except BaseException:
        sink.abort()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StagedBundle(
        meta.manifest_bytes, meta.manifest_dict, meta.manifest, meta.signatures, folder
    )


def open_model_bundle(
    path: str | os.PathLike[str], *, limits: BundleLimits = DEFAULT_LIMITS
) -> BundleContents:
    """Read a bundle for ``predict``/``inspect``: structure, sizes and hashes are checked;
    signatures are not (use ``edge-runtime verify`` or the update service for that)."""
    return read_bundle(path, limits=limits)
