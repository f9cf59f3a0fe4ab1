"""The I/O shell around the pure verifier: read a bundle file, the trust file and the
version record, check everything, and report; nothing is installed.

Used by ``edge-runtime verify`` and by the update service (which passes a staging folder
and installs from it on success).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone

from edge_runtime.bundle.atomic import PathLike
from edge_runtime.bundle.reader import (
    DEFAULT_LIMITS,
    BundleLimits,
    BundleMeta,
    StagedBundle,
    scan_bundle,
    stage_bundle,
)
from edge_runtime.bundle.semver import VersionLike
from edge_runtime.trust.state import highest_seen_for
from edge_runtime.trust.trustfile import TrustFile, load_trust
from edge_runtime.trust.verifier import Verified, verify_bundle_report


@dataclass(frozen=True)
class CheckResult:
    verified: Verified
    bundle: BundleMeta
    staged: StagedBundle | None  # set when a staging folder was asked for


def check_bundle_file(
    path: PathLike,
    trust: PathLike | TrustFile,
    state_dir: PathLike | None,
    device_class: str | None,
    staging_dir: PathLike | None = None,
    *,
    installed_version: VersionLike | None = None,
    now: datetime | None = None,
    limits: BundleLimits = DEFAULT_LIMITS,
) -> CheckResult:
    """Check a bundle file completely; nothing is installed and no record is changed.

    Without ``staging_dir`` the files are hashed and dropped (constant memory). With it,
    they are written there (a fresh folder) and left for the caller on success; on any
    refusal the folder is removed. ``state_dir`` supplies the highest version seen (read
    only; the caller records a version once it installs it, see ``trust.state``).

    Raises:
        ConfigError: the trust file is missing or malformed.
        BundleError, IntegrityError, SizeLimitError: from reading the bundle.
        SignatureError, ExpiredError, RollbackError, CompatibilityError: from verifying.
    """
    trust_file = trust if isinstance(trust, TrustFile) else load_trust(trust)
    moment = now or datetime.now(timezone.utc)
    staged = None
    if staging_dir is None:
        meta = scan_bundle(path, limits=limits)
    else:
        staged = stage_bundle(path, staging_dir, limits)
        meta = staged
    try:
        verified = verify_bundle_report(
            meta.manifest_bytes,
            meta.signatures,
            trust_file,
            device_class=device_class,
            installed_version=installed_version,
            highest_seen=highest_seen_for(state_dir, meta.manifest.name),
            now=moment,
        )
    except BaseException:
        if staged is not None:
            shutil.rmtree(staged.folder, ignore_errors=True)
        raise
    return CheckResult(verified, meta, staged)
