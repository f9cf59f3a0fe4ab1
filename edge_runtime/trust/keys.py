"""Ed25519 keys: the only module that imports ``cryptography``.

Files (written by ``edge-fleet keygen``):

* ``NAME.key``: the private key, PEM (PKCS#8, unencrypted), mode 0600 from the moment
  it is created. Loading refuses a key file that group or others can read, as ssh does.
* ``NAME.pub``: the public key, PEM (SubjectPublicKeyInfo), readable by anyone.

A key id is the sha256 hex of the raw 32-byte public key (64 characters; the first 16
are enough to show a person). Trust files carry public keys as base64 of the raw bytes;
``load_public_key`` reads either form. Private key material is never printed or put in
an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge_runtime.bundle.atomic import fsync_dir
from edge_runtime.bundle.signatures import Signature
from edge_runtime.errors import ConfigError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_KEY_FILE_BYTES = 16 * 1024

PathLike = Union[str, "os.PathLike[str]"]


def key_id(public_raw: bytes) -> str:
    """The key id: sha256 hex of the raw 32-byte Ed25519 public key."""
    if len(public_raw) != PUBLIC_KEY_BYTES:
        raise ConfigError(
            f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_raw)}"
        )
    return hashlib.sha256(public_raw).hexdigest()


def short_id(keyid: str) -> str:
    return keyid[:16]


@dataclass(frozen=True)
class SigningKey:
    """A private key in memory. ``repr`` shows only the key id."""

    keyid: str
    public_raw: bytes
    _private: Ed25519PrivateKey = field(repr=False, compare=False)

    def sign(self, data: bytes) -> Signature:
        return Signature(self.keyid, self._private.sign(data))

    def __repr__(self) -> str:
        return f"SigningKey(keyid={self.keyid!r})"


def _wrap(private: Ed25519PrivateKey) -> SigningKey:
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return SigningKey(key_id(public_raw), public_raw, private)


def generate_signing_key() -> SigningKey:
    return _wrap(Ed25519PrivateKey.generate())


def public_key_b64(public_raw: bytes) -> str:
    return base64.b64encode(public_raw).decode("ascii")


def verify_signature(public_raw: bytes, signature: bytes, data: bytes) -> bool:
    """True only for a valid Ed25519 signature of ``data`` by this key; never raises."""
    if len(public_raw) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise ConfigError(
            f"{path} exists already; refusing to overwrite a key (choose another --name or folder)"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc}") from exc
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    os.close(fd)


def write_key_pair(folder: PathLike, name: str, key: SigningKey) -> tuple[Path, Path]:
    """Write ``folder/name.key`` (0600) and ``folder/name.pub``; never overwrites.

    Raises:
        ConfigError: a file exists already or the folder is not writable.
    """
    out = Path(folder)
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create key folder {out}: {exc}") from exc
    private_path, public_path = out / f"{name}.key", out / f"{name}.pub"
    if public_path.exists():
        raise ConfigError(f"{public_path} exists already; refusing to overwrite a key")
    pem = key._private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _create_exclusive(private_path, pem, 0o600)
    public_pem = key._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _create_exclusive(public_path, public_pem, 0o644)
    fsync_dir(out)
    return private_path, public_path


def _read_small(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(f"{path} is too large to be an Ed25519 {what}")
    return data


def load_signing_key(path: PathLike) -> SigningKey:
    """Read a private key file written by ``write_key_pair``.

    Raises:
        ConfigError: missing, readable by group or others, or not an Ed25519 PEM key
            (the message never quotes the file).
    """
    p = Path(path)
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except FileNotFoundError as exc:
        raise ConfigError(f"private key file not found: {p}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read private key file {p}: {exc}") from exc
    if mode & 0o077:
        raise ConfigError(
            f"private key file {p} has mode {mode:04o}; it must be readable by its owner only "
            f"(chmod 600 {p})"
        )
    data = _read_small(p, "private key file")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # The library's message can quote the input; do not pass it on.
        raise ConfigError(f"{p} is not an unencrypted PEM private key") from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm and others
        raise ConfigError(f"{p} is not a usable private key ({type(exc).__name__})") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{p} holds a {type(private).__name__}; an Ed25519 key is needed")
    return _wrap(private)


def parse_public_key(data: bytes, origin: str) -> bytes:
    """Raw 32 bytes from a PEM public key, or from base64 of the raw key.

    Raises:
        ConfigError: neither form, or not Ed25519.
    """
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            public = serialization.load_pem_public_key(text)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{origin} is not a PEM public key") from exc
        if not isinstance(public, Ed25519PublicKey):
            raise ConfigError(f"{origin} holds a {type(public).__name__}; an Ed25519 key is needed")
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            f"{origin} is neither a PEM public key nor base64 of a raw Ed25519 key"
        ) from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ConfigError(
            f"{origin}: an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, got {len(raw)}"
        )
    return raw


def load_public_key(path: PathLike) -> bytes:
    """Raw public key bytes from a ``.pub`` file (PEM or base64 raw).

    Raises:
        ConfigError: missing or not an Ed25519 public key.
    """
    return parse_public_key(_read_small(Path(path), "public key file"), str(path))
