"""The pure bundle verifier: manifest and signatures in, a verified ``Manifest`` out.

No I/O, no clock: the caller passes the trust file, the device class, the versions it
knows and the time. Checks, in this order (the first that fails raises, and its
exception says which):

1. signatures: at least ``trust.threshold`` distinct trusted keys signed the canonical
   manifest bytes (a key signing twice counts once; untrusted keys are ignored; a forged
   signature counts for nothing) -> ``SignatureError``; a trust file past its own
   ``expires`` -> ``ExpiredError``;
2. the manifest is well formed (only now is its content read) -> ``BundleError``;
3. ``expires`` is after ``now`` (freeze attack) -> ``ExpiredError``;
4. the version is above both the installed one and the highest ever seen for this model
   name (rollback attack; the same version again is refused too) -> ``RollbackError``;
5. ``compatible`` names the device class or ``*`` -> ``CompatibilityError``.

``verify_files`` checks contents held in memory against a manifest (the bundle reader
does the same while streaming).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

from edge_runtime.bundle.manifest import (
    Manifest,
    canonical_bytes,
    format_utc,
    parse_manifest,
    parse_manifest_bytes,
)
from edge_runtime.bundle.semver import SemVer, VersionLike, as_semver
from edge_runtime.bundle.signatures import SignatureLike
from edge_runtime.errors import (
    BundleError,
    CompatibilityError,
    ExpiredError,
    IntegrityError,
    RollbackError,
)
from edge_runtime.trust.tally import Tally, require_threshold
from edge_runtime.trust.trustfile import TrustFile

ManifestInput = Union[bytes, Mapping[str, Any]]


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    tally: Tally
    trust_version: int
    threshold: int


def _canonical(manifest: ManifestInput) -> bytes:
    if isinstance(manifest, (bytes, bytearray)):
        return bytes(manifest)
    return canonical_bytes(manifest)


def check_freshness(manifest: Manifest, now: datetime) -> None:
    """Raises ``ExpiredError`` when ``expires`` is not after ``now`` (freeze attack)."""
    if manifest.expires <= now:
        raise ExpiredError(
            f"bundle {manifest.name} {manifest.version} expired at {format_utc(manifest.expires)} "
            f"(now {format_utc(now)}); refused (an old bundle replayed, or ask for a fresh one)"
        )


def check_version(
    manifest: Manifest, installed: VersionLike | None, highest_seen: VersionLike | None
) -> None:
    """Raises ``RollbackError`` unless the version is strictly above both known versions."""
    known = [as_semver(v) for v in (installed, highest_seen) if v is not None]
    if not known:
        return
    floor: SemVer = max(known)
    if manifest.version == floor:
        raise RollbackError(
            f"bundle {manifest.name} {manifest.version} is the same version as the installed or "
            f"highest seen {floor}; refused (a new update needs a higher version)"
        )
    if manifest.version < floor:
        raise RollbackError(
            f"bundle {manifest.name} {manifest.version} is older than the installed or highest "
            f"seen {floor}; refused (rollback)"
        )


def check_compatible(manifest: Manifest, device_class: str | None) -> None:
    """Raises ``CompatibilityError`` unless ``compatible`` names the class or ``*``.

    ``device_class=None`` skips the check (host-side inspection only).
    """
    if device_class is not None and not manifest.is_compatible(device_class):
        raise CompatibilityError(
            f"bundle {manifest.name} {manifest.version} is for {', '.join(manifest.compatible)}, "
            f"not for this device class {device_class!r}; refused"
        )


def verify_bundle_report(
    manifest: ManifestInput,
    signatures: Sequence[SignatureLike],
    trust: TrustFile,
    *,
    device_class: str | None,
    installed_version: VersionLike | None,
    highest_seen: VersionLike | None,
    now: datetime,
) -> Verified:
    """``verify_bundle``, also returning who signed."""
    if now.tzinfo is None:
        raise ValueError("verify_bundle needs a timezone-aware 'now'")
    data = _canonical(manifest)
    result = require_threshold(data, signatures, trust.keys, trust.threshold, "bundle signatures")
    if trust.expires is not None and trust.expires <= now:
        raise ExpiredError(
            f"trust file v{trust.version} expired at {format_utc(trust.expires)}; "
            "install a newer trust file"
        )
    if isinstance(manifest, (bytes, bytearray)):
        parsed = parse_manifest_bytes(data)[1]
    else:
        parsed = parse_manifest(dict(manifest))
    check_freshness(parsed, now)
    check_version(parsed, installed_version, highest_seen)
    check_compatible(parsed, device_class)
    return Verified(parsed, result, trust.version, trust.threshold)


def verify_bundle(
    manifest: ManifestInput,
    signatures: Sequence[SignatureLike],
    trust: TrustFile,
    *,
    device_class: str | None,
    installed_version: VersionLike | None,
    highest_seen: VersionLike | None,
    now: datetime,
) -> Manifest:
    """Verify a bundle's manifest and signatures; see the module docstring for the checks.

    Every argument after ``trust`` is keyword-only and has no default, so a caller says
    explicitly what it knows (``None`` where it knows nothing).

    Raises:
        SignatureError, ExpiredError, RollbackError, CompatibilityError: the check that
            failed, by name in the message.
        BundleError: a signed manifest that is malformed.
    """
    return verify_bundle_report(
        manifest,
        signatures,
        trust,
        device_class=device_class,
        installed_version=installed_version,
        highest_seen=highest_seen,
        now=now,
    ).manifest


def verify_files(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """Every file the manifest names is present with its size and sha256; nothing else.

    Raises:
        BundleError: a file missing, or one the manifest does not name (mix-and-match).
        IntegrityError: a size or hash differs.
    """
    extra = sorted(set(files) - set(manifest.files))
    if extra:
        raise BundleError(
            f"bundle holds files the manifest does not name (mix-and-match): {', '.join(extra)}"
        )
    missing = sorted(set(manifest.files) - set(files))
    if missing:
        raise BundleError(f"bundle lacks files its manifest names: {', '.join(missing)}")
    for name, entry in manifest.files.items():
        data = files[name]
        if len(data) != entry.size:
            raise IntegrityError(
                f"{name} is {len(data)} bytes; the manifest says {entry.size}; refused"
            )
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(
                f"{name}: sha256 differs from the manifest; the file was altered; refused"
            )
