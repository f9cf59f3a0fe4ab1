"""Key rotation (TUF root-style): version N+1 needs a threshold of N's keys and of its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import bundle_factory as bf
import pytest

from edge_runtime.bundle.manifest import canonical_bytes
from edge_runtime.bundle.writer import write_bundle
from edge_runtime.errors import ConfigError, ExpiredError, RollbackError, SignatureError
from edge_runtime.trust.check import check_bundle_file
from edge_runtime.trust.keys import SigningKey, generate_signing_key
from edge_runtime.trust.trustfile import (
    TrustFile,
    install_trust_update,
    load_trust,
    make_trust,
    parse_trust,
    save_trust,
    sign_trust,
)

A, B, C = generate_signing_key(), generate_signing_key(), generate_signing_key()


def trust_of(
    *keys: SigningKey, version: int, threshold: int = 1, signers: tuple = (), **kw: Any
) -> TrustFile:  # type: ignore[type-arg]
    return sign_trust(make_trust([k.public_raw for k in keys], threshold, version, **kw), signers)


@pytest.fixture
def trust_path(tmp_path: Path) -> Path:
    path = tmp_path / "trust.json"
    save_trust(path, trust_of(A, version=1))
    return path


def bundle(path: Path, *keys: SigningKey, version: str = "1.2.0") -> Path:
    m = bf.filled_manifest(version=version)
    return write_bundle(path, m, bf.files(), [k.sign(canonical_bytes(m)) for k in keys])


def check(path: Path, trust_path: Path) -> Any:
    return check_bundle_file(path, trust_path, None, "rpi4", now=bf.NOW)


def test_rotation_from_a_to_b(trust_path: Path, tmp_path: Path) -> None:
    signed_by_a = bundle(tmp_path / "a.edgebundle", A)
    signed_by_b = bundle(tmp_path / "b.edgebundle", B)
    assert check(signed_by_a, trust_path).verified.tally.valid == (A.keyid,)
    with pytest.raises(SignatureError, match="untrusted"):
        check(signed_by_b, trust_path)

    v2 = trust_of(B, version=2, signers=(A, B))  # adds B, removes A; A approves, B accepts
    install_trust_update(trust_path, v2, now=bf.NOW)
    assert load_trust(trust_path).version == 2
    assert set(load_trust(trust_path).keys) == {B.keyid}

    assert check(signed_by_b, trust_path).verified.tally.valid == (B.keyid,)
    with pytest.raises(SignatureError, match="1 by untrusted keys ignored"):
        check(signed_by_a, trust_path)


def test_rotation_in_two_steps_add_then_remove(trust_path: Path) -> None:
    install_trust_update(trust_path, trust_of(A, B, version=2, signers=(A,)), now=bf.NOW)
    install_trust_update(trust_path, trust_of(B, version=3, signers=(B,)), now=bf.NOW)
    assert set(load_trust(trust_path).keys) == {B.keyid}


def _refused(trust_path: Path, new: TrustFile, error: type, fragment: str) -> None:
    before = trust_path.read_bytes()
    with pytest.raises(error, match=fragment):
        install_trust_update(trust_path, new, now=bf.NOW)
    assert trust_path.read_bytes() == before


def test_new_trust_not_signed_by_current_keys_is_refused(trust_path: Path) -> None:
    _refused(
        trust_path, trust_of(B, version=2, signers=(B,)), SignatureError, "keys of installed v1"
    )


def test_new_trust_signed_by_an_outsider_is_refused(trust_path: Path) -> None:
    _refused(
        trust_path, trust_of(C, version=2, signers=(C,)), SignatureError, "keys of installed v1"
    )


def test_new_trust_not_signed_by_its_own_keys_is_refused(trust_path: Path) -> None:
    # A may hand over to B only if B (the new key holder) signs too.
    _refused(trust_path, trust_of(B, version=2, signers=(A,)), SignatureError, "its own keys")


def test_trust_version_going_down_is_refused(trust_path: Path) -> None:
    install_trust_update(trust_path, trust_of(A, B, version=3, signers=(A,)), now=bf.NOW)
    _refused(
        trust_path,
        trust_of(A, version=2, signers=(A, B)),
        RollbackError,
        "version 2 is not above the installed version 3",
    )


def test_trust_same_version_is_refused(trust_path: Path) -> None:
    _refused(trust_path, trust_of(A, B, version=1, signers=(A, B)), RollbackError, "not above")


def test_revoked_key_cannot_sign_a_later_trust_file(trust_path: Path) -> None:
    install_trust_update(trust_path, trust_of(B, version=2, signers=(A, B)), now=bf.NOW)
    # A was rotated out at v2; a v3 by A alone (a stolen old key) is refused.
    _refused(
        trust_path, trust_of(A, version=3, signers=(A,)), SignatureError, "keys of installed v2"
    )


def test_threshold_two_of_three_rotation(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    save_trust(path, trust_of(A, B, C, version=1, threshold=2))
    _refused(
        path,
        trust_of(A, B, version=2, threshold=2, signers=(A,)),
        SignatureError,
        "1 valid signature",
    )
    install_trust_update(path, trust_of(A, B, version=2, threshold=2, signers=(A, B)), now=bf.NOW)
    assert load_trust(path).threshold == 2


def test_expired_trust_update_is_refused(trust_path: Path) -> None:
    old = trust_of(A, B, version=2, signers=(A, B), expires=bf.NOW - timedelta(days=1))
    _refused(trust_path, old, ExpiredError, "expired")


def test_expired_trust_file_refuses_bundles(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    save_trust(path, trust_of(A, version=1, expires=bf.NOW - timedelta(seconds=1)))
    with pytest.raises(ExpiredError, match="trust file v1 expired"):
        check(bundle(tmp_path / "a.edgebundle", A), path)


def test_key_id_must_match_public_key() -> None:
    doc = trust_of(A, version=1).document()
    doc["signed"]["keys"] = {B.keyid: doc["signed"]["keys"][A.keyid]}
    with pytest.raises(ConfigError, match="not the sha256 of its public key"):
        parse_trust(doc)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda s: s.update(threshold=2), "threshold must be 1..1"),
        (lambda s: s.update(threshold=0), "threshold must be 1..1"),
        (lambda s: s.update(version=0), "version must be"),
        (lambda s: s.update(type="root"), "type must be 'trust'"),
        (lambda s: s.update(extra=1), "nothing else"),
        (lambda s: s.update(keys={}), "non-empty"),
        (lambda s: s.update(expires="tomorrow"), "UTC time"),
    ],
)
def test_malformed_trust_file_is_refused(tmp_path: Path, change: Any, fragment: str) -> None:
    doc = trust_of(A, version=1).document()
    change(doc["signed"])
    path = tmp_path / "trust.json"
    path.write_bytes(canonical_bytes(doc))
    with pytest.raises(ConfigError, match=fragment):
        load_trust(path)


def test_missing_trust_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trust file not found"):
        load_trust(tmp_path / "nope.json")
