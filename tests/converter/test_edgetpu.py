"""``--edgetpu``: the op/tensor check, and edgetpu_compiler present (a fake) or absent."""

from __future__ import annotations

import os
import stat
import tarfile

import pytest
from convert_helpers import MODELS, digits_args

from converter.edgetpu import check_model

FLOAT = MODELS / "digits_float.tflite"

FAKE_COMPILER = """#!/bin/sh
# Stands in for edgetpu_compiler: edgetpu_compiler -s -o OUTDIR MODEL
out=""; model=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift 2;; -s) shift;; *) model="$1"; shift;; esac
done
name=$(basename "$model" .tflite)
cp "$model" "$out/${name}_edgetpu.tflite"
echo "Edge TPU Compiler version 16.0.384591198 (fake for tests)"
echo "Model compiled successfully in 1 ms."
"""


def test_int8_digits_model_maps_fully():
    report = check_model((MODELS / "digits_int8.tflite").read_bytes())
    assert report.first_cpu_op is None
    assert report.to_dict()["ops_on_edgetpu"] == report.to_dict()["ops_total"] > 3


def test_float_model_and_detection_postprocess_fall_back_to_cpu():
    floats = check_model(FLOAT.read_bytes()).to_dict()
    assert floats["ops_on_edgetpu"] == 0
    assert "float32, not int8/uint8" in " ".join(floats["cpu_fallback"][0]["problems"])
    detect = check_model((MODELS / "detect_int8.tflite").read_bytes()).to_dict()
    ops = [c["op"] for c in detect["cpu_fallback"]]
    assert "TFLite_Detection_PostProcess" in ops
    assert detect["ops_on_edgetpu"] >= 3  # the convolutions before it still map


@pytest.mark.converter
def test_without_compiler_on_path_the_report_says_so(edge_convert, calib_dir, tmp_path):
    import shutil

    assert shutil.which("edgetpu_compiler") is None, "this test needs a host without the compiler"
    out = tmp_path / "t.edgebundle"
    done = edge_convert(FLOAT, *digits_args(calib_dir, out, "--edgetpu", "--max-samples", "20"))
    assert done.returncode == 0, done.stderr
    assert "edgetpu_compiler is not on the PATH" in done.stdout
    with tarfile.open(out) as tar:
        assert "model_cpu.tflite" not in tar.getnames()


@pytest.mark.converter
def test_with_compiler_on_path_its_log_is_kept_and_cpu_model_bundled(
    edge_convert, calib_dir, tmp_path, monkeypatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "edgetpu_compiler"
    fake.write_text(FAKE_COMPILER)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "t.edgebundle"
    report = edge_convert(
        FLOAT, *digits_args(calib_dir, out, "--edgetpu", "--max-samples", "20", "--json")
    ).report()
    compiler = report["edgetpu"]["compiler"]
    assert compiler["available"] is True and compiler["returncode"] == 0
    assert "fake for tests" in compiler["log"]
    assert report["edgetpu"]["fully_mapped"] is True
    with tarfile.open(out) as tar:
        assert {"model.tflite", "model_cpu.tflite"} <= set(tar.getnames())
