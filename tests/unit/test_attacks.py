"""One test per attack on the update channel (after TUF's list), each asserting the exact
refusal and that nothing on the device changed: no staging folder left, the version
record and trust file byte-for-byte the same.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundle_factory as bf
import pytest

from edge_runtime.bundle.manifest import canonical_bytes
from edge_runtime.bundle.reader import BundleLimits, read_bundle, stage_bundle
from edge_runtime.bundle.signatures import Signature, signatures_file_bytes
from edge_runtime.bundle.writer import write_bundle
from edge_runtime.errors import (
    BundleError,
    CompatibilityError,
    ExpiredError,
    IntegrityError,
    RollbackError,
    SignatureError,
    SizeLimitError,
)
from edge_runtime.trust.check import check_bundle_file
from edge_runtime.trust.keys import SigningKey, generate_signing_key
from edge_runtime.trust.state import record_seen, state_path
from edge_runtime.trust.trustfile import make_trust, save_trust

KEY_A = generate_signing_key()
KEY_B = generate_signing_key()
KEY_C = generate_signing_key()  # never trusted


class Device:
    """A device's disk: trust file, version record, and where staging would happen."""

    def __init__(self, root: Path, *keys: SigningKey, threshold: int = 1) -> None:
        self.root = root / "device"
        self.root.mkdir()
        self.trust = self.root / "trust.json"
        save_trust(self.trust, make_trust([k.public_raw for k in keys], threshold))
        self.state_dir = self.root / "state"
        record_seen(self.state_dir, "digits", "1.1.0")
        self.staging = self.root / "staging-new"
        self.incoming = root / "incoming"
        self.incoming.mkdir()
        self.before = bf.snapshot(self.root)

    def check(self, bundle: Path, **kw: Any) -> Any:
        return check_bundle_file(
            bundle,
            self.trust,
            self.state_dir,
            kw.pop("device_class", "rpi4"),
            self.staging,
            now=bf.NOW,
            **kw,
        )

    def assert_unchanged(self) -> None:
        assert not self.staging.exists(), "staging folder left behind"
        assert bf.snapshot(self.root) == self.before, "device files changed"
        assert state_path(self.state_dir).read_bytes() == self.before["state/versions_seen.json"][2]

    def refuse(self, bundle: Path, error: type, *fragments: str, **kw: Any) -> BaseException:
        with pytest.raises(error) as info:
            self.check(bundle, **kw)
        assert type(info.value) is error, (
            f"expected exactly {error.__name__}, got {type(info.value).__name__}"
        )
        for fragment in fragments:
            assert fragment in str(info.value), f"{fragment!r} not in {info.value}"
        self.assert_unchanged()
        return info.value


def signed_bundle(path: Path, *keys: SigningKey, **overrides: Any) -> Path:
    m = bf.filled_manifest(**overrides)
    sigs = [k.sign(canonical_bytes(m)) for k in keys]
    return write_bundle(path, m, bf.files(), sigs)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path, KEY_A)


def test_good_bundle_is_accepted_and_staged(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "good.edgebundle", KEY_A)
    result = device.check(bundle)
    assert result.verified.manifest.version_text == "1.2.0"
    assert result.verified.tally.valid == (KEY_A.keyid,)
    assert (device.staging / "model.tflite").read_bytes() == bf.MODEL
    # Checking records nothing: the update service raises the record when it installs.
    assert state_path(device.state_dir).read_bytes() == device.before["state/versions_seen.json"][2]


def test_forged_signature(device: Device) -> None:
    m = bf.filled_manifest()
    forged = Signature(KEY_A.keyid, KEY_C.sign(canonical_bytes(m)).sig)  # A's id, C's key
    bundle = write_bundle(device.incoming / "b.edgebundle", m, bf.files(), [forged])
    device.refuse(
        bundle, SignatureError, "0 valid", "invalid (forged or altered)", KEY_A.keyid[:16]
    )


def test_forged_signature_random_bytes(device: Device) -> None:
    m = bf.filled_manifest()
    bundle = write_bundle(
        device.incoming / "b.edgebundle", m, bf.files(), [Signature(KEY_A.keyid, bytes(64))]
    )
    device.refuse(bundle, SignatureError, "0 valid", "invalid")


def test_signature_by_untrusted_key(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_C)
    device.refuse(bundle, SignatureError, "0 valid", "1 by untrusted keys ignored")


def test_below_threshold(tmp_path: Path) -> None:
    device = Device(tmp_path, KEY_A, KEY_B, threshold=2)
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, KEY_C)
    device.refuse(bundle, SignatureError, "1 valid signature(s) from trusted keys, 2 required")


def test_threshold_met_by_two_distinct_keys(tmp_path: Path) -> None:
    device = Device(tmp_path, KEY_A, KEY_B, threshold=2)
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, KEY_B)
    assert set(device.check(bundle).verified.tally.valid) == {KEY_A.keyid, KEY_B.keyid}


def test_one_key_signing_twice(tmp_path: Path) -> None:
    device = Device(tmp_path, KEY_A, KEY_B, threshold=2)
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, KEY_A)
    device.refuse(bundle, SignatureError, "1 valid", "2 required", "counted once")


def _flip(data: bytes, needle: bytes, offset: int = 0) -> bytes:
    at = data.index(needle) + offset
    assert data.count(needle) == 1
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_tampered_model_byte(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A)
    bundle.write_bytes(_flip(bundle.read_bytes(), bf.MODEL, offset=500))
    device.refuse(bundle, IntegrityError, "model.tflite", "sha256", "altered")


def test_tampered_manifest_field(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A)
    data = bundle.read_bytes()
    tampered = data.replace(b'"compatible":["rpi4","rpi5"]', b'"compatible":["rpi4","rpi9"]')
    assert tampered != data
    bundle.write_bytes(tampered)
    device.refuse(bundle, SignatureError, "0 valid", "invalid (forged or altered)")


def test_tampered_manifest_rewritten_with_old_signatures(device: Device) -> None:
    good = bf.filled_manifest()
    sig = KEY_A.sign(canonical_bytes(good))
    bad = bf.filled_manifest(version="9.0.0")
    bundle = write_bundle(device.incoming / "b.edgebundle", bad, bf.files(), [sig])
    device.refuse(bundle, SignatureError, "0 valid", "invalid")


def test_replayed_older_version(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, version="1.0.5")
    device.refuse(bundle, RollbackError, "1.0.5 is older than", "1.1.0", "rollback")


def test_replayed_older_version_after_reinstall(device: Device) -> None:
    # The installed model is gone (reinstall), but the record of what was seen is not.
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, version="1.1.0-rc.1")
    device.refuse(bundle, RollbackError, "older", installed_version=None)


def test_same_version_again(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, version="1.1.0")
    device.refuse(bundle, RollbackError, "same version")


def test_same_version_as_installed(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, version="1.3.0")
    device.refuse(bundle, RollbackError, "same version", installed_version="1.3.0")


def test_expired(device: Device) -> None:
    bundle = signed_bundle(
        device.incoming / "b.edgebundle",
        KEY_A,
        created="2026-01-01T00:00:00Z",
        expires="2026-05-31T12:00:00Z",
    )
    device.refuse(bundle, ExpiredError, "expired at 2026-05-31T12:00:00Z")


def test_incompatible_device(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, compatible=["rpi5"])
    device.refuse(bundle, CompatibilityError, "rpi5", "'rpi4'")


def test_wildcard_is_compatible_with_any_class(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A, compatible=["*"])
    assert device.check(bundle, device_class="jetson").verified.manifest.compatible == ("*",)


def _raw_bundle(path: Path, members: list, extra: tuple = ()) -> Path:  # type: ignore[type-arg]
    path.write_bytes(bf.raw_tar(members, extra=extra))
    return path


def _signed_members(files: dict | None = None, **overrides: Any) -> list:  # type: ignore[type-arg]
    m = bf.filled_manifest(**overrides)
    sigs = signatures_file_bytes([KEY_A.sign(canonical_bytes(m))])
    return bf.members_of(m, files if files is not None else bf.files(), sigs)


def test_extra_file(device: Device) -> None:
    members = _signed_members()
    members.insert(2, ("install.sh", b"#!/bin/sh\nrm -rf /\n"))
    bundle = _raw_bundle(device.incoming / "b.edgebundle", members)
    device.refuse(bundle, BundleError, "'install.sh'", "does not name", "mix-and-match")


def test_missing_file(device: Device) -> None:
    members = _signed_members(files={"model.tflite": bf.MODEL})  # manifest names labels.txt too
    bundle = _raw_bundle(device.incoming / "b.edgebundle", members)
    device.refuse(bundle, BundleError, "lacks files", "labels.txt")


def test_mix_and_match_files_from_another_bundle(device: Device) -> None:
    members = _signed_members(
        files={"model.tflite": b"TFL3 another model", "labels.txt": bf.LABELS}
    )
    bundle = _raw_bundle(device.incoming / "b.edgebundle", members)
    device.refuse(bundle, IntegrityError, "model.tflite", "bytes in the tar")


def test_duplicate_member(device: Device) -> None:
    members = _signed_members()
    members.insert(2, ("model.tflite", bf.MODEL))
    bundle = _raw_bundle(device.incoming / "b.edgebundle", members)
    device.refuse(bundle, BundleError, "'model.tflite' twice")


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("../evil.sh", "path traversal"),
        ("../../../../tmp/evil.sh", "path traversal"),
        ("/etc/cron.d/evil", "absolute path"),
        ("sub/model.tflite", "inside a folder"),
    ],
)
def test_path_traversal(device: Device, name: str, fragment: str) -> None:
    members = _signed_members()
    members.insert(1, (name, b"payload"))
    bundle = _raw_bundle(device.incoming / "b.edgebundle", members)
    device.refuse(bundle, BundleError, fragment)
    assert not (device.root.parent / "evil.sh").exists()


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_symlink(device: Device) -> None:
    members = _signed_members()
    members.pop(2)  # drop labels.txt, replace it with a link to a device secret
    bundle = _raw_bundle(
        device.incoming / "b.edgebundle",
        members,
        extra=(_special("labels.txt", tarfile.SYMTYPE, "/etc/shadow"),),
    )
    device.refuse(bundle, BundleError, "'labels.txt' is a symbolic link")


@pytest.mark.parametrize(
    "kind, label",
    [
        (tarfile.LNKTYPE, "a hard link"),
        (tarfile.CHRTYPE, "a character device"),
        (tarfile.BLKTYPE, "a block device"),
        (tarfile.FIFOTYPE, "a fifo"),
        (tarfile.DIRTYPE, "a folder"),
    ],
)
def test_links_devices_fifos_and_folders(device: Device, kind: bytes, label: str) -> None:
    members = _signed_members()
    bundle = _raw_bundle(
        device.incoming / "b.edgebundle",
        members[:2],
        extra=(_special("thing", kind, "model.tflite"),),
    )
    device.refuse(
        bundle, BundleError, "tar member 'thing", f"is {label}; bundles hold regular files only"
    )


def test_oversized_member(device: Device) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A)
    limits = BundleLimits(max_member_bytes=1000)  # the model is 1028 bytes
    device.refuse(
        bundle, SizeLimitError, "model.tflite of 1028 bytes", "cap per file is 1000", limits=limits
    )


def test_oversized_member_header_lies(device: Device) -> None:
    # The tar header claims 8 GiB where the signed manifest says 1028 bytes: refused on
    # the header, before a byte of it is read.
    data = bytearray(signed_bundle(device.incoming / "b.edgebundle", KEY_A).read_bytes())
    at = data.index(b"model.tflite\x00")
    header = bytearray(data[at : at + 512])
    header[124:136] = b"77777777777\x00"
    header[148:156] = b"        "
    header[148:156] = b"%06o\x00 " % sum(header)
    data[at : at + 512] = header
    bundle = device.incoming / "b.edgebundle"
    bundle.write_bytes(bytes(data))
    device.refuse(bundle, SizeLimitError, "model.tflite is 8589934591 bytes")


class EndlessStream(io.RawIOBase):
    """A download that never ends: ``prefix``, then ``filler`` forever."""

    def __init__(self, prefix: bytes, filler: bytes) -> None:
        self._source = self._generate(prefix, filler)
        self._pending = b""
        self.produced = 0

    @staticmethod
    def _generate(prefix: bytes, filler: bytes) -> Iterator[bytes]:
        yield prefix
        while True:
            yield filler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            self._pending = next(self._source)
            self.produced += len(self._pending)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _manifest_member(**overrides: Any) -> bytes:
    data = canonical_bytes(bf.filled_manifest(**overrides))
    return _header("manifest.json", len(data)) + data + bytes((-len(data)) % 512)


@pytest.mark.parametrize(
    "case",
    [
        "manifest-never-ends",
        "model-data-never-ends-past-the-cap",
        "garbage-after-valid-start",
        "zero-blocks-forever",
    ],
)
def test_endless_stream(tmp_path: Path, case: str) -> None:
    staging = tmp_path / "staging"
    limits = BundleLimits()
    if case == "manifest-never-ends":
        stream = EndlessStream(_header("manifest.json", 8 * 1024**3 - 1), b"{" * 65536)
        error, fragment = SizeLimitError, "manifest.json is 8589934591 bytes"
    elif case == "model-data-never-ends-past-the-cap":
        # The manifest declares a file that fits the cap; the bytes read to get it do not.
        limits = BundleLimits(max_total_bytes=64 * 1024, max_member_bytes=1024 * 1024)
        size = 64 * 1024 - 100
        filler = b"\x5a" * 4096
        m = bf.manifest()
        m["files"] = {"model.tflite": {"sha256": "0" * 64, "size": size}}
        m["labels"] = None
        data = canonical_bytes(m)
        prefix = (
            _header("manifest.json", len(data))
            + data
            + bytes((-len(data)) % 512)
            + _header("model.tflite", size)
        )
        stream = EndlessStream(prefix, filler)
        error, fragment = SizeLimitError, "larger than the cap of 65536 bytes"
    elif case == "garbage-after-valid-start":
        stream = EndlessStream(_manifest_member(), b"\xff" * 65536)
        error, fragment = BundleError, "checksum"
    else:
        stream = EndlessStream(b"", bytes(65536))
        error, fragment = BundleError, "no manifest.json"
    started = time.monotonic()
    with pytest.raises(error, match=fragment):
        stage_bundle(stream, staging, limits)
    assert time.monotonic() - started < 10
    assert stream.produced <= limits.max_total_bytes + 65536 * 2
    assert not staging.exists()


@pytest.mark.parametrize(
    "where", ["inside-a-header", "inside-model-data", "before-end-marker", "half-end-marker"]
)
def test_truncated_tar(device: Device, where: str) -> None:
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A)
    data = bundle.read_bytes()
    sig_at = data.index(b"signatures.json\x00")
    assert len(signatures_file_bytes(read_bundle(bundle).signatures)) < 512  # one data block
    end_of_members = sig_at + 512 + 512
    cut = {
        "inside-a-header": 100,
        "inside-model-data": data.index(bf.MODEL) + 300,
        "before-end-marker": end_of_members,
        "half-end-marker": end_of_members + 512,
    }[where]
    bundle.write_bytes(data[:cut])
    device.refuse(bundle, BundleError, "truncated")


def test_expected_manifest_mismatch_is_refused(tmp_path: Path) -> None:
    # The update service verifies an announced manifest first; the download must match it.
    announced = canonical_bytes(bf.filled_manifest(version="1.3.0"))
    bundle = signed_bundle(tmp_path / "b.edgebundle", KEY_A)
    with pytest.raises(BundleError, match="differs from the manifest that was announced"):
        stage_bundle(bundle, tmp_path / "staging", expected_manifest=announced)
    assert not (tmp_path / "staging").exists()


def test_unreadable_version_record_fails_closed(device: Device) -> None:
    state_path(device.state_dir).write_text("{not json")
    device.before = bf.snapshot(device.root)
    bundle = signed_bundle(device.incoming / "b.edgebundle", KEY_A)
    with pytest.raises(RollbackError, match="refusing updates until fixed"):
        device.check(bundle)
    assert not device.staging.exists()
    assert bf.snapshot(device.root) == device.before


# -- rollback orders -------------------------------------------------------------------
def _order(*keys: SigningKey, device: str = "pi-01", minutes: float = 10, **changes: Any) -> bytes:
    import json
    import secrets
    from datetime import datetime, timedelta, timezone

    from edge_runtime.trust.orders import RollbackOrder, order_document

    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=minutes)
    signed = {**order_document(RollbackOrder(device, None, expires, secrets.token_hex(16)))}
    data = canonical_bytes(signed)
    signed.update(changes)  # altered after signing
    sigs = [k.sign(data).to_json() for k in keys]
    return json.dumps({"order": signed, "signatures": sigs}).encode()


def _accept(tmp_path: Path, payload: bytes, *keys: SigningKey, threshold: int = 1) -> Any:
    from edge_runtime.update.rollback import UsedNonces, accept_order

    trust = tmp_path / "trust.json"
    if not trust.exists():
        save_trust(trust, make_trust([k.public_raw for k in keys or (KEY_A,)], threshold))
    return accept_order(
        payload, trust=trust, device_id="pi-01", previous="1.0.0", nonces=UsedNonces(tmp_path)
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"reason": "operator", "ts": "2026-01-01T00:00:00Z"}', "rollback_unsigned"),
        (b"", "rollback_unsigned"),
        (_order(), "rollback_unsigned"),
        (_order(KEY_C), "rollback_signature"),
        (_order(KEY_A, version="0.0.1"), "rollback_signature"),  # altered after signing
        (_order(KEY_A, device="pi-02"), "rollback_misaddressed"),
        (_order(KEY_A, minutes=-1), "rollback_expired"),
        (_order(KEY_A, minutes=60 * 24 * 30), "rollback_bad_order"),
    ],
    ids=[
        "old-unsigned",
        "empty",
        "no-signatures",
        "untrusted",
        "altered",
        "wrong-device",
        "expired",
        "too-long",
    ],
)
def test_rollback_order_attacks_are_refused_and_use_no_nonce(
    tmp_path: Path, payload: bytes, reason: str
) -> None:
    from edge_runtime.trust.orders import OrderRefused
    from edge_runtime.update.rollback import NONCES_FILE

    with pytest.raises(OrderRefused) as caught:
        _accept(tmp_path, payload)
    assert caught.value.reason == reason, caught.value
    assert not (tmp_path / NONCES_FILE).exists()


def test_a_rollback_order_under_the_threshold_is_refused(tmp_path: Path) -> None:
    from edge_runtime.trust.orders import OrderRefused

    with pytest.raises(OrderRefused, match="1 valid signature") as caught:
        _accept(tmp_path, _order(KEY_A, KEY_A, KEY_C), KEY_A, KEY_B, threshold=2)
    assert caught.value.reason == "rollback_signature"
    assert _accept(tmp_path, _order(KEY_A, KEY_B)).device == "pi-01"


def test_a_replayed_rollback_order_is_refused_across_restarts(tmp_path: Path) -> None:
    from edge_runtime.trust.orders import OrderRefused
    from edge_runtime.update.rollback import NONCES_FILE

    payload = _order(KEY_A)
    assert _accept(tmp_path, payload).device == "pi-01"
    assert stat_mode(tmp_path / NONCES_FILE) == 0o600
    with pytest.raises(OrderRefused) as caught:
        _accept(tmp_path, payload)  # a new UsedNonces: what a restarted daemon reads
    assert caught.value.reason == "rollback_replayed"
    (tmp_path / NONCES_FILE).write_text("{not json")
    with pytest.raises(OrderRefused, match="cannot be read"):  # fails closed
        _accept(tmp_path, _order(KEY_A))


def stat_mode(path: Path) -> int:
    import stat

    return stat.S_IMODE(path.stat().st_mode)
