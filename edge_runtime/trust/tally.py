"""Count signatures the way a threshold needs: distinct trusted keys with valid signatures.

A key that signs twice counts once; a key that is not trusted is ignored; a signature
that does not verify (forged, or over other bytes) counts for nothing and is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge_runtime.bundle.signatures import Signature, SignatureLike, parse_signature
from edge_runtime.errors import SignatureError
from edge_runtime.trust.keys import short_id, verify_signature


@dataclass(frozen=True)
class Tally:
    valid: tuple[str, ...]  # distinct trusted key ids whose signature verified
    invalid: tuple[str, ...]  # trusted key ids whose signature did not verify
    untrusted: tuple[str, ...]  # key ids not in the trusted set (ignored)
    repeated: tuple[str, ...]  # key ids that appeared more than once (counted once)

    def describe(self, threshold: int) -> str:
        parts = [f"{len(self.valid)} valid signature(s) from trusted keys, {threshold} required"]
        if not (self.valid or self.invalid or self.untrusted):
            parts[0] += ": it carries no signature at all (unsigned)"
        if self.invalid:
            parts.append(
                f"invalid (forged or altered) from {', '.join(map(short_id, self.invalid))}"
            )
        if self.untrusted:
            parts.append(f"{len(self.untrusted)} by untrusted keys ignored")
        if self.repeated:
            parts.append(f"repeated key(s) counted once: {', '.join(map(short_id, self.repeated))}")
        return "; ".join(parts)


def tally(data: bytes, signatures: Iterable[SignatureLike], keys: Mapping[str, bytes]) -> Tally:
    """Check each signature of ``data`` against ``keys`` (key id -> raw public key)."""
    valid: list[str] = []
    invalid: list[str] = []
    untrusted: list[str] = []
    counts: dict[str, int] = {}
    for item in signatures:
        sig: Signature = parse_signature(item, "signature")
        counts[sig.keyid] = counts.get(sig.keyid, 0) + 1
        public = keys.get(sig.keyid)
        if public is None:
            untrusted.append(sig.keyid)
        elif sig.keyid in valid:
            continue  # this key already counts; a second signature adds nothing
        elif verify_signature(public, sig.sig, data):
            valid.append(sig.keyid)
        else:
            invalid.append(sig.keyid)
    return Tally(
        valid=tuple(valid),
        invalid=tuple(dict.fromkeys(k for k in invalid if k not in valid)),
        untrusted=tuple(dict.fromkeys(untrusted)),
        repeated=tuple(k for k, n in counts.items() if n > 1),
    )


def require_threshold(
    data: bytes,
    signatures: Iterable[SignatureLike],
    keys: Mapping[str, bytes],
    threshold: int,
    what: str,
) -> Tally:
    """``tally`` and refuse below ``threshold``.

    Raises:
        SignatureError: fewer than ``threshold`` distinct trusted keys signed ``data``.
    """
    result = tally(data, signatures, keys)
    if threshold < 1 or len(result.valid) < threshold:
        raise SignatureError(f"{what} refused: {result.describe(threshold)}")
    return result
