"""Keys, signature counting and the version record."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from edge_runtime.bundle.signatures import Signature
from edge_runtime.errors import ConfigError, RollbackError
from edge_runtime.trust.keys import (
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_b64,
    verify_signature,
    write_key_pair,
)
from edge_runtime.trust.state import highest_seen_for, load_highest_seen, record_seen, state_path
from edge_runtime.trust.tally import tally


def test_key_id_is_sha256_of_raw_public_key() -> None:
    key = generate_signing_key()
    assert key.keyid == hashlib.sha256(key.public_raw).hexdigest()
    assert key_id(key.public_raw) == key.keyid
    assert len(key.keyid) == 64


def test_key_pair_files_round_trip_and_private_is_0600(tmp_path: Path) -> None:
    key = generate_signing_key()
    old = os.umask(0o000)  # even a permissive umask must not widen the private key
    try:
        private, public = write_key_pair(tmp_path / "keys", "ops", key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    loaded = load_signing_key(private)
    assert loaded.keyid == key.keyid
    assert load_public_key(public) == key.public_raw
    sig = loaded.sign(b"data")
    assert verify_signature(key.public_raw, sig.sig, b"data")
    assert not verify_signature(key.public_raw, sig.sig, b"other data")
    assert "PRIVATE" not in repr(loaded) and repr(loaded) == f"SigningKey(keyid={key.keyid!r})"


def test_public_key_also_reads_base64_raw(tmp_path: Path) -> None:
    key = generate_signing_key()
    path = tmp_path / "k.pub"
    path.write_text(public_key_b64(key.public_raw) + "\n")
    assert load_public_key(path) == key.public_raw


def test_key_files_are_never_overwritten(tmp_path: Path) -> None:
    write_key_pair(tmp_path, "ops", generate_signing_key())
    before = (tmp_path / "ops.key").read_bytes()
    with pytest.raises(ConfigError, match="exists already"):
        write_key_pair(tmp_path, "ops", generate_signing_key())
    assert (tmp_path / "ops.key").read_bytes() == before


def test_group_readable_private_key_is_refused(tmp_path: Path) -> None:
    private, _ = write_key_pair(tmp_path, "ops", generate_signing_key())
    private.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_signing_key(private)


def test_garbage_private_key_error_does_not_quote_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET\n-----END PRIVATE KEY-----\n"
    )
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_signing_key(path)
    assert "SECRET" not in str(info.value)


def test_tally_counts_distinct_trusted_keys() -> None:
    a, b, c = generate_signing_key(), generate_signing_key(), generate_signing_key()
    keys = {a.keyid: a.public_raw, b.keyid: b.public_raw}
    data = b"manifest"
    forged = Signature(b.keyid, c.sign(data).sig)
    result = tally(data, [a.sign(data), a.sign(data), forged, c.sign(data)], keys)
    assert result.valid == (a.keyid,)
    assert result.invalid == (b.keyid,)
    assert result.untrusted == (c.keyid,)
    assert result.repeated == (a.keyid,)


def test_tally_bad_then_good_signature_by_same_key_counts_once() -> None:
    a = generate_signing_key()
    data = b"manifest"
    result = tally(data, [Signature(a.keyid, bytes(64)), a.sign(data)], {a.keyid: a.public_raw})
    assert result.valid == (a.keyid,) and result.invalid == ()


def test_version_record_only_goes_up(tmp_path: Path) -> None:
    assert load_highest_seen(tmp_path) == {}
    assert record_seen(tmp_path, "digits", "1.2.0")
    assert not record_seen(tmp_path, "digits", "1.1.9")
    assert not record_seen(tmp_path, "digits", "1.2.0")
    assert record_seen(tmp_path, "other", "0.1.0")
    assert str(highest_seen_for(tmp_path, "digits")) == "1.2.0"
    assert highest_seen_for(None, "digits") is None
    assert (
        state_path(tmp_path).read_text() == '{"highest_seen":{"digits":"1.2.0","other":"0.1.0"}}\n'
    )


def test_malformed_version_record_fails_closed(tmp_path: Path) -> None:
    state_path(tmp_path).write_text('{"highest_seen":{"digits":"not-a-version"}}')
    with pytest.raises(RollbackError, match="malformed"):
        load_highest_seen(tmp_path)
    with pytest.raises(RollbackError):
        record_seen(tmp_path, "digits", "9.9.9")
