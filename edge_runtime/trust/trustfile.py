"""The trust file a device holds: which keys may sign bundles, how many must, and its version.

Format (JSON; signatures are over ``canonical_bytes(signed)``)::

    {"signed": {"type": "trust", "version": 1, "threshold": 1,
                "keys": {"<keyid>": {"public": "<base64 of the raw 32-byte key>"}},
                "expires": "2027-01-01T00:00:00Z"},          # optional
     "signatures": [{"keyid": "<keyid>", "sig": "<base64>"}]}

The first trust file is placed on the device when it is provisioned; it is the root of
trust and need not be signed. Rotation works as TUF's root role: a new file replaces
version N only if its version is higher and it is signed by ``threshold`` keys of
version N *and* by its own ``threshold`` of its own keys. So keys are added, removed or
replaced without re-flashing, and a stolen old key cannot take a device over once it
has been rotated out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_runtime.bundle.atomic import PathLike, atomic_write_bytes
from edge_runtime.bundle.manifest import (
    SHA256_RE,
    canonical_bytes,
    format_utc,
    loads_strict,
    parse_utc,
)
from edge_runtime.bundle.signatures import Signature, parse_signature_list, signatures_json
from edge_runtime.errors import BundleError, ConfigError, ExpiredError, RollbackError
from edge_runtime.trust.keys import PUBLIC_KEY_BYTES, SigningKey, key_id, public_key_b64
from edge_runtime.trust.tally import Tally, require_threshold

TRUST_TYPE = "trust"
MAX_TRUST_BYTES = 1024 * 1024
MAX_KEYS = 64
_SIGNED_KEYS = frozenset({"type", "version", "threshold", "keys", "expires"})


@dataclass(frozen=True)
class TrustFile:
    version: int
    threshold: int
    keys: Mapping[str, bytes] = field(hash=False)  # key id -> raw public key
    expires: datetime | None
    signed: Mapping[str, Any] = field(hash=False, compare=False, repr=False)
    signatures: tuple[Signature, ...] = field(compare=False, repr=False)

    @property
    def signed_bytes(self) -> bytes:
        return canonical_bytes(self.signed)

    def document(self) -> dict[str, Any]:
        return {"signed": dict(self.signed), "signatures": signatures_json(self.signatures)}


def _bad(origin: str, message: str) -> ConfigError:
    return ConfigError(f"trust file {origin}: {message}")


def _parse_keys(obj: Any, origin: str) -> dict[str, bytes]:
    if not isinstance(obj, dict) or not obj:
        raise _bad(origin, 'signed.keys must be a non-empty object of key id -> {"public": base64}')
    if len(obj) > MAX_KEYS:
        raise _bad(origin, f"signed.keys holds {len(obj)} keys; at most {MAX_KEYS}")
    keys = {}
    for keyid, entry in obj.items():
        if (
            not isinstance(entry, dict)
            or set(entry) != {"public"}
            or not isinstance(entry["public"], str)
        ):
            raise _bad(origin, f'signed.keys[{keyid[:16]!r}] must be {{"public": base64}}')
        try:
            raw = base64.b64decode(entry["public"].encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise _bad(origin, f"signed.keys[{keyid[:16]!r}].public is not base64") from exc
        if len(raw) != PUBLIC_KEY_BYTES:
            raise _bad(origin, f"signed.keys[{keyid[:16]!r}] is not a 32-byte Ed25519 public key")
        if not isinstance(keyid, str) or not SHA256_RE.match(keyid) or key_id(raw) != keyid:
            raise _bad(origin, f"key id {keyid[:16]!r}... is not the sha256 of its public key")
        keys[keyid] = raw
    return keys


def parse_trust(obj: Any, origin: str = "(document)") -> TrustFile:
    """Check the shape of a trust document (signatures are not verified here).

    Raises:
        ConfigError: the field that is wrong, by name.
    """
    if not isinstance(obj, dict) or set(obj) != {"signed", "signatures"}:
        raise _bad(origin, 'must be an object with exactly "signed" and "signatures"')
    signed = obj["signed"]
    if (
        not isinstance(signed, dict)
        or not set(signed) <= _SIGNED_KEYS
        or not {"type", "version", "threshold", "keys"} <= set(signed)
    ):
        raise _bad(
            origin,
            "signed must hold type, version, threshold, keys and optionally expires, nothing else",
        )
    if signed["type"] != TRUST_TYPE:
        raise _bad(origin, f"signed.type must be {TRUST_TYPE!r}, got {signed['type']!r}")
    version, threshold = signed["version"], signed["threshold"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(origin, f"signed.version must be a whole number of at least 1, got {version!r}")
    keys = _parse_keys(signed["keys"], origin)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int)
        or not 1 <= threshold <= len(keys)
    ):
        raise _bad(
            origin,
            f"signed.threshold must be 1..{len(keys)} (the number of keys), got {threshold!r}",
        )
    expires = None
    if signed.get("expires") is not None:
        try:
            expires = parse_utc(signed["expires"], "signed.expires")
        except BundleError as exc:
            raise _bad(origin, str(exc)) from exc
    try:
        signatures = parse_signature_list(obj["signatures"], "signatures")
    except BundleError as exc:
        raise _bad(origin, str(exc)) from exc
    return TrustFile(version, threshold, keys, expires, signed, signatures)


def make_trust(
    keys: Iterable[bytes], threshold: int, version: int = 1, expires: datetime | None = None
) -> TrustFile:
    """An unsigned trust file for these raw public keys.

    Raises:
        ConfigError: no keys, or a threshold out of range.
    """
    signed: dict[str, Any] = {
        "type": TRUST_TYPE,
        "version": version,
        "threshold": threshold,
        "keys": {key_id(raw): {"public": public_key_b64(raw)} for raw in keys},
    }
    if expires is not None:
        signed["expires"] = format_utc(expires)
    return parse_trust({"signed": signed, "signatures": []})


def sign_trust(trust: TrustFile, signing_keys: Iterable[SigningKey]) -> TrustFile:
    """Add a signature by each key that has not signed yet."""
    signatures = list(trust.signatures)
    present = {s.keyid for s in signatures}
    for key in signing_keys:
        if key.keyid not in present:
            signatures.append(key.sign(trust.signed_bytes))
            present.add(key.keyid)
    return parse_trust({"signed": dict(trust.signed), "signatures": signatures_json(signatures)})


def verify_trust_update(
    current: TrustFile, new: TrustFile, *, now: datetime
) -> tuple[Tally, Tally]:
    """The rotation rule: may ``new`` replace ``current``?

    Returns the tallies (by current keys, by the new file's own keys).

    Raises:
        RollbackError: the version is not above the current one.
        SignatureError: below threshold of the current keys, or of its own keys.
        ExpiredError: the new file has expired.
    """
    if new.version <= current.version:
        raise RollbackError(
            f"trust file version {new.version} is not above the installed version "
            f"{current.version}; refused"
        )
    by_current = require_threshold(
        new.signed_bytes,
        new.signatures,
        current.keys,
        current.threshold,
        f"trust file v{new.version} (signatures by the keys of installed v{current.version})",
    )
    by_own = require_threshold(
        new.signed_bytes,
        new.signatures,
        new.keys,
        new.threshold,
        f"trust file v{new.version} (signatures by its own keys)",
    )
    if new.expires is not None and new.expires <= now:
        raise ExpiredError(
            f"trust file v{new.version} expired at {format_utc(new.expires)}; refused"
        )
    return by_current, by_own


def read_trust_bytes(data: bytes, origin: str) -> TrustFile:
    if len(data) > MAX_TRUST_BYTES:
        raise _bad(origin, f"is {len(data)} bytes; at most {MAX_TRUST_BYTES}")
    try:
        obj = loads_strict(data, "trust file")
    except BundleError as exc:
        raise _bad(origin, str(exc)) from exc
    return parse_trust(obj, origin)


def load_trust(path: PathLike) -> TrustFile:
    """Read and check a trust file.

    Raises:
        ConfigError: missing, unreadable or malformed.
    """
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            data = handle.read(MAX_TRUST_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"trust file not found: {p}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read trust file {p}: {exc}") from exc
    return read_trust_bytes(data, str(p))


def save_trust(path: PathLike, trust: TrustFile) -> None:
    """Write atomically (0644; the trust file holds public keys only)."""
    text = canonical_bytes(trust.document())
    atomic_write_bytes(path, text + b"\n", mode=0o644)


def install_trust_update(path: PathLike, new: TrustFile, *, now: datetime) -> TrustFile:
    """Replace the trust file at ``path`` with ``new`` if the rotation rule allows it.

    Raises:
        ConfigError: the current file cannot be read.
        RollbackError, SignatureError, ExpiredError: as ``verify_trust_update``; the file on
            disk is then unchanged.
    """
    current = load_trust(path)
    verify_trust_update(current, new, now=now)
    save_trust(path, new)
    return new
