"""Keras and SavedModel inputs through the real ``edge-convert`` (TensorFlow path)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from convert_helpers import KERAS_NUMPY2, MODELS, ROOT, digits_args, held_out_images

pytestmark = [pytest.mark.converter, pytest.mark.slow, KERAS_NUMPY2]

REPLAY = Path(__file__).with_name("replay_golden.py")
DEVICE_PYTHON = ROOT / ".venv-tflite" / "bin" / "python"


def _replay(python: Path, bundle: Path, images: list) -> dict:
    done = subprocess.run(
        [str(python), str(REPLAY), str(bundle), *map(str, images)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_keras_digits_cnn_converts_within_one_point_and_golden_vectors_replay_on_device(
    edge_convert, digits_keras, calib_dir, heldout, labels_file, tmp_path
):
    out = tmp_path / "digits.edgebundle"
    done = edge_convert(
        digits_keras,
        *digits_args(calib_dir, out, "--labels", labels_file, "--validation", heldout, "--json"),
    )
    report = done.report()
    val = report["validation"]
    assert val["samples"] == 360
    assert val["float_top1"] > 0.9
    assert val["accuracy_drop"] <= 0.01, val
    assert val["top1_agreement"] > 0.97
    assert report["size_bytes"]["int8"] < report["size_bytes"]["float"]
    assert report["converter"] == "tensorflow"
    assert "CONV_2D" in report["ops"]

    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert names[0] == "manifest.json" and names[-1] == "signatures.json"
    assert {"model.tflite", "labels.txt", "golden.npz"} <= set(names)
    assert manifest["metrics"]["validation"] == val
    assert manifest["input"]["dtype"] == "int8"
    assert (manifest["input"]["mean"], manifest["input"]["std"]) == (0.0, 255.0)
    assert manifest["input"]["color"] == "L" and manifest["input"]["shape"] == [1, 8, 8, 1]
    assert manifest["outputs"]["kind"] == "classification"
    assert manifest["compatible"] == ["*"]

    # The images behind the first golden inputs, as files the device decodes itself.
    from PIL import Image

    images = []
    for i, pixels in enumerate(held_out_images()[:3]):
        images.append(tmp_path / f"g{i}.png")
        Image.fromarray(pixels).save(images[-1])
    host_side = _replay(Path(sys.executable), out, images)
    assert host_side["golden"] >= 4 and host_side["input_dtype"] == "int8"
    assert host_side["max_diff"] == [0], host_side
    assert host_side["same_inputs"] == [True, True, True]
    if DEVICE_PYTHON.exists():  # the device venv: tflite-runtime with numpy<2
        device = _replay(DEVICE_PYTHON, out, images)
        assert device["backend"] == "tflite"
        assert device["same_inputs"] == [True, True, True]
        assert max(device["max_diff"]) <= 1, device  # at most one quantization step


@pytest.fixture(scope="module")
def keras_model(digits_keras):
    import tensorflow as tf

    return tf.keras.models.load_model(digits_keras, compile=False)


@pytest.mark.parametrize("form", ["h5", "saved_model"])
def test_h5_and_saved_model_inputs_convert(
    form, edge_convert, keras_model, calib_dir, heldout, labels_file, tmp_path
):
    if form == "h5":
        model_path = tmp_path / "digits.h5"
        keras_model.save(model_path)
    else:
        model_path = tmp_path / "digits_savedmodel"
        keras_model.export(model_path, verbose=False)
    out = tmp_path / "d.edgebundle"
    report = edge_convert(
        model_path,
        *digits_args(
            calib_dir,
            out,
            "--labels",
            labels_file,
            "--validation",
            heldout,
            "--max-samples",
            "40",
            "--input-type",
            "uint8",
            "--json",
        ),
    ).report()
    assert report["source"]["format"] == form
    assert report["calibration"]["samples"] == 40
    assert report["input"]["dtype"] == "uint8"
    assert report["validation"]["accuracy_drop"] <= 0.01
    assert out.exists()


def test_committed_fixtures_agree_with_models_json():
    """The committed models still give the accuracy models.json records (host interpreter)."""
    from make_test_models import interpreter_accuracy

    from edge_runtime.inference.types import Normalization

    info = json.loads((MODELS / "models.json").read_text())["models"]
    import numpy as np

    with np.load(MODELS / "digits_test.npz") as data:
        x, y = data["x"], data["y"]
    for name in ("digits_float", "digits_int8", "digits_uint8", "digits_labeled"):
        entry = info[name]
        acc = interpreter_accuracy(
            (MODELS / entry["file"]).read_bytes(), x, y, Normalization(entry["mean"], entry["std"])
        )
        assert acc == pytest.approx(entry["heldout_top1"], abs=1e-6), name
