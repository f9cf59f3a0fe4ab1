"""``--sign-key``: the bundle leaves the converter signed and verifies against a trust file."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from convert_helpers import MODELS, ROOT, digits_args

pytestmark = pytest.mark.converter

FLEET = Path(sys.executable).with_name("edge-fleet")


def _fleet(*args: object) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        [str(FLEET), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_signed_bundle_verifies_and_an_unknown_key_does_not(edge_convert, calib_dir, tmp_path):
    keys = tmp_path / "keys"
    assert _fleet("keygen", "--out", keys, "--name", "release").returncode == 0
    assert _fleet("keygen", "--out", keys, "--name", "other").returncode == 0
    trust = tmp_path / "trust.json"
    done = _fleet(
        "trust",
        "init",
        "--out",
        trust,
        "--key",
        keys / "release.pub",
        "--sign-key",
        keys / "release.key",
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "s.edgebundle"
    report = edge_convert(
        MODELS / "digits_float.tflite",
        *digits_args(
            calib_dir,
            out,
            "--sign-key",
            keys / "release.key",
            "--max-samples",
            "20",
            "--expires-days",
            "30",
            "--compatible",
            "pi4,pi5",
            "--compatible",
            "zero2",
            "--json",
        ),
    ).report()
    assert report["signed"] is True
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["compatible"] == ["pi4", "pi5", "zero2"]
    verified = _fleet("verify", out, "--trust", trust, "--device-class", "pi4")
    assert verified.returncode == 0, verified.stderr

    other = tmp_path / "o.edgebundle"
    signed_by_other = edge_convert(
        MODELS / "digits_float.tflite",
        *digits_args(calib_dir, other, "--sign-key", keys / "other.key", "--max-samples", "20"),
    )
    assert signed_by_other.returncode == 0, signed_by_other.stderr
    refused = _fleet("verify", other, "--trust", trust, "--device-class", "pi4")
    assert refused.returncode != 0
    assert "signature" in refused.stderr.lower(), refused.stderr


def test_missing_signing_key_fails_before_converting(edge_convert, calib_dir, tmp_path):
    out = tmp_path / "s.edgebundle"
    done = edge_convert(
        MODELS / "digits_float.tflite",
        *digits_args(calib_dir, out, "--sign-key", tmp_path / "absent.key"),
    )
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "absent.key" in done.stderr
    assert not out.exists()
