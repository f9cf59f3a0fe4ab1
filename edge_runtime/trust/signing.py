"""Host side: add a signature to a bundle (``edge-fleet sign``, ``edge-convert --sign-key``)."""

from __future__ import annotations

from edge_runtime.bundle.atomic import PathLike
from edge_runtime.bundle.manifest import canonical_bytes
from edge_runtime.bundle.reader import read_bundle
from edge_runtime.bundle.signatures import Signature
from edge_runtime.bundle.writer import build_manifest, write_bundle
from edge_runtime.errors import BundleError
from edge_runtime.trust.keys import SigningKey, load_signing_key, short_id


def sign_bundle(path: PathLike, private_key: SigningKey | PathLike) -> Signature:
    """Sign the bundle's canonical manifest bytes and rewrite the bundle atomically.

    ``private_key`` is a ``SigningKey`` or the path of a private key file.

    Raises:
        BundleError: the bundle is unreadable, or this key has signed it already.
        ConfigError: the key file cannot be used.
    """
    key = private_key if isinstance(private_key, SigningKey) else load_signing_key(private_key)
    contents = read_bundle(path)
    if any(s.keyid == key.keyid for s in contents.signatures):
        raise BundleError(f"{path} is already signed by key {short_id(key.keyid)}; nothing changed")
    if (
        canonical_bytes(build_manifest(contents.manifest_dict, contents.files))
        != contents.manifest_bytes
    ):
        raise BundleError(f"{path}: manifest does not match its files; rebuild the bundle")
    signature = key.sign(contents.manifest_bytes)
    write_bundle(path, contents.manifest_dict, contents.files, [*contents.signatures, signature])
    return signature
