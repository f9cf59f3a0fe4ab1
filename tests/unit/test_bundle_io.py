"""Bundle writer and reader: reproducible bytes, atomic writes, staging, signing."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import bundle_factory as bf
import pytest

from edge_runtime.bundle.manifest import canonical_bytes
from edge_runtime.bundle.reader import open_model_bundle, read_bundle, scan_bundle, stage_bundle
from edge_runtime.bundle.writer import write_bundle
from edge_runtime.errors import BundleError
from edge_runtime.trust.keys import generate_signing_key
from edge_runtime.trust.signing import sign_bundle
from edge_runtime.trust.tally import tally

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    a = bf.make_bundle(tmp_path / "a.edgebundle")
    b = bf.make_bundle(tmp_path / "b.edgebundle")
    assert a.read_bytes() == b.read_bytes()


def test_layout_order_modes_and_owner(tmp_path: Path) -> None:
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "manifest.json",
        "labels.txt",
        "model.tflite",
        "signatures.json",
    ]
    for m in members:
        assert (
            m.isreg()
            and m.mode == 0o644
            and m.uid == 0
            and m.gid == 0
            and m.mtime == members[0].mtime
        )


def test_writer_fills_files_and_keeps_callers_manifest(tmp_path: Path) -> None:
    m = bf.manifest()
    path = write_bundle(tmp_path / "a.edgebundle", m, bf.files())
    assert m["files"] == {}
    contents = read_bundle(path)
    assert contents.manifest_dict["files"]["model.tflite"] == {
        "sha256": bf.sha(bf.MODEL),
        "size": len(bf.MODEL),
    }
    assert contents.manifest_bytes == canonical_bytes(contents.manifest_dict)
    assert contents.files == bf.files()
    assert contents.signatures == ()


def test_failed_write_leaves_old_bundle_and_no_temp_file(tmp_path: Path) -> None:
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    before = path.read_bytes()
    with pytest.raises(BundleError, match="not in files"):
        write_bundle(path, bf.manifest(model="other.tflite"), bf.files())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.edgebundle"]


def test_write_fails_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_runtime.bundle import writer

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_add", boom)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(tmp_path / "a.edgebundle", bf.manifest(), bf.files())
    assert list(tmp_path.iterdir()) == []


def test_read_from_stream_and_scan(tmp_path: Path) -> None:
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    contents = read_bundle(io.BytesIO(path.read_bytes()))
    assert contents.manifest.name == "digits"
    meta = scan_bundle(path)
    assert meta.manifest_bytes == contents.manifest_bytes
    assert not hasattr(meta, "files")


def test_stage_writes_every_member_into_a_private_folder(tmp_path: Path) -> None:
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    staged = stage_bundle(path, tmp_path / "stage")
    assert stat.S_IMODE((tmp_path / "stage").stat().st_mode) == 0o700
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == [
        "labels.txt",
        "manifest.json",
        "model.tflite",
        "signatures.json",
    ]
    assert staged.path("model.tflite").read_bytes() == bf.MODEL
    assert staged.files["labels.txt"].read_bytes() == bf.LABELS
    assert (tmp_path / "stage" / "manifest.json").read_bytes() == staged.manifest_bytes


def test_stage_refuses_an_existing_folder_and_leaves_it(tmp_path: Path) -> None:
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "keep").write_text("mine")
    with pytest.raises(BundleError, match="exists already"):
        stage_bundle(path, tmp_path / "stage")
    assert (tmp_path / "stage" / "keep").read_text() == "mine"


def test_missing_bundle_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle file not found"):
        read_bundle(tmp_path / "nope.edgebundle")


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.edgebundle"
    path.write_bytes(b"hello" * 200)
    with pytest.raises(BundleError, match="checksum"):
        read_bundle(path)


def test_first_member_must_be_the_manifest(tmp_path: Path) -> None:
    members = bf.members_of(bf.filled_manifest(), bf.files())
    path = tmp_path / "x.edgebundle"
    path.write_bytes(bf.raw_tar([members[1], members[0], *members[2:]]))
    with pytest.raises(BundleError, match="first member of a bundle must be manifest.json"):
        read_bundle(path)


def test_sign_bundle_adds_signatures_and_refuses_a_duplicate(tmp_path: Path) -> None:
    a, b = generate_signing_key(), generate_signing_key()
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    sign_bundle(path, a)
    sign_bundle(path, b)
    before = path.read_bytes()
    with pytest.raises(BundleError, match="already signed by key"):
        sign_bundle(path, a)
    assert path.read_bytes() == before
    contents = read_bundle(path)
    assert [s.keyid for s in contents.signatures] == [a.keyid, b.keyid]
    result = tally(
        contents.manifest_bytes, contents.signatures, {a.keyid: a.public_raw, b.keyid: b.public_raw}
    )
    assert result.valid == (a.keyid, b.keyid)
    assert contents.files == bf.files()


def test_model_bundle_loads_for_the_runtime(tmp_path: Path) -> None:
    from edge_runtime.inference.source import load_source

    model = (MODELS / "digits_int8.tflite").read_bytes()
    m = bf.manifest(labels="labels.txt")
    path = write_bundle(
        tmp_path / "d.edgebundle", m, {"model.tflite": model, "labels.txt": bf.LABELS}
    )
    assert open_model_bundle(path).files["model.tflite"] == model
    source = load_source(path)
    assert source.identity.name == "digits" and source.identity.version == "1.2.0"
    assert source.identity.sha256 == bf.sha(model)
    assert list(source.labels or ()) == ["zero", "one", "two"]


def test_random_corruption_only_ever_gives_project_errors(tmp_path: Path) -> None:
    """Flip, cut or splice bytes of a signed bundle: reading plus verifying refuses with a
    project error (one clear line), never a stray library exception, and never accepts
    altered content."""
    import random

    from edge_runtime.errors import EdgeError
    from edge_runtime.trust.trustfile import make_trust
    from edge_runtime.trust.verifier import verify_bundle

    a = generate_signing_key()
    path = bf.make_bundle(tmp_path / "a.edgebundle")
    sign_bundle(path, a)
    good = path.read_bytes()
    original = read_bundle(path)
    trust = make_trust([a.public_raw], 1)
    rng = random.Random(1234)
    accepted = 0
    for _ in range(400):
        data = bytearray(good)
        action = rng.choice(("flip", "cut", "splice"))
        at = rng.randrange(len(data))
        if action == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        try:
            contents = read_bundle(io.BytesIO(bytes(data)))
            verify_bundle(
                contents.manifest_bytes,
                contents.signatures,
                trust,
                device_class="rpi4",
                installed_version=None,
                highest_seen=None,
                now=bf.NOW,
            )
        except EdgeError:
            continue
        accepted += 1
        # Only changes outside checked content (tar padding, header fields we ignore) pass,
        # and then the content is exactly the original.
        assert contents.files == bf.files()
        assert contents.manifest_bytes == original.manifest_bytes
    assert accepted < 400
