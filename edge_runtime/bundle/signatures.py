"""The signature list carried by bundles and trust files: ``[{"keyid": hex, "sig": base64}]``.

Only the shape is checked here; whether a signature is valid, and whether its key is
trusted, is the verifier's business (an entry that fails there simply does not count).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from edge_runtime.bundle.manifest import SIGNATURES_NAME, canonical_bytes, loads_strict
from edge_runtime.errors import BundleError

MAX_SIGNATURES = 64
MAX_FIELD_CHARS = 512


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes  # raw signature bytes (64 for Ed25519)

    def to_json(self) -> dict[str, str]:
        return {"keyid": self.keyid, "sig": base64.b64encode(self.sig).decode("ascii")}


SignatureLike = Union[Signature, Mapping[str, Any]]


def parse_signature(obj: Any, where: str) -> Signature:
    """One ``{"keyid", "sig"}`` entry.

    Raises:
        BundleError: not that shape, or ``sig`` is not base64.
    """
    if isinstance(obj, Signature):
        return obj
    if not isinstance(obj, dict) or set(obj) != {"keyid", "sig"}:
        raise BundleError(f"{where} must be an object with exactly keyid and sig, got {obj!r:.120}")
    keyid, sig = obj["keyid"], obj["sig"]
    if not isinstance(keyid, str) or not keyid or len(keyid) > MAX_FIELD_CHARS:
        raise BundleError(f"{where}.keyid must be a key id string, got {keyid!r:.80}")
    if not isinstance(sig, str) or len(sig) > MAX_FIELD_CHARS:
        raise BundleError(f"{where}.sig must be a base64 string")
    try:
        raw = base64.b64decode(sig.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise BundleError(f"{where}.sig is not valid base64: {exc}") from exc
    return Signature(keyid, raw)


def parse_signature_list(obj: Any, where: str = "signatures") -> tuple[Signature, ...]:
    if not isinstance(obj, list):
        raise BundleError(f"{where} must be a list, got {type(obj).__name__}")
    if len(obj) > MAX_SIGNATURES:
        raise BundleError(f"{where} holds {len(obj)} entries; at most {MAX_SIGNATURES} are allowed")
    return tuple(parse_signature(item, f"{where}[{i}]") for i, item in enumerate(obj))


def parse_signatures_file(data: bytes) -> tuple[Signature, ...]:
    """``signatures.json`` bytes: ``{"signatures": [...]}``.

    Raises:
        BundleError: not that shape.
    """
    obj = loads_strict(data, SIGNATURES_NAME)
    if not isinstance(obj, dict) or set(obj) != {"signatures"}:
        raise BundleError(f'{SIGNATURES_NAME} must hold exactly {{"signatures": [...]}}')
    return parse_signature_list(obj["signatures"], SIGNATURES_NAME)


def signatures_json(signatures: Iterable[SignatureLike]) -> list[dict[str, str]]:
    return [parse_signature(s, "signature").to_json() for s in signatures]


def signatures_file_bytes(signatures: Iterable[SignatureLike]) -> bytes:
    return canonical_bytes({"signatures": signatures_json(signatures)})
