"""Each bad input ends with one clear line on stderr, a non-zero exit, and no bundle."""

from __future__ import annotations

import pytest
from convert_helpers import KERAS_NUMPY2, MODELS, digits_args
from convert_helpers import one_line_failure as _one_line_failure

pytestmark = [pytest.mark.converter, KERAS_NUMPY2]

FLOAT = MODELS / "digits_float.tflite"


def test_missing_calibration_folder(edge_convert, tmp_path):
    out = tmp_path / "x.edgebundle"
    done = edge_convert(FLOAT, *digits_args(tmp_path / "nowhere", out))
    _one_line_failure(done, "calibration folder", "does not exist")
    assert not out.exists()


def test_empty_calibration_folder(edge_convert, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "x.edgebundle"
    _one_line_failure(edge_convert(FLOAT, *digits_args(tmp_path / "empty", out)), "is empty")
    assert not out.exists()


def test_calibration_folder_without_images(edge_convert, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("text")
    (folder / "b.csv").write_text("1,2,3")
    out = tmp_path / "x.edgebundle"
    _one_line_failure(edge_convert(FLOAT, *digits_args(folder, out)), "no images")
    assert not out.exists()


def test_calibration_images_that_do_not_decode(edge_convert, tmp_path):
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "a.png").write_text("not really a png")
    out = tmp_path / "x.edgebundle"
    _one_line_failure(edge_convert(FLOAT, *digits_args(folder, out)), "could be decoded")
    assert not out.exists()


def test_model_with_dynamic_input_shape(edge_convert, calib_dir, tmp_path):
    import tensorflow as tf

    model = tf.keras.Sequential(
        [
            tf.keras.Input((None, None, 1)),
            tf.keras.layers.Conv2D(4, 3),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(10),
        ]
    )
    path = tmp_path / "dynamic.keras"
    model.save(path)
    out = tmp_path / "x.edgebundle"
    _one_line_failure(
        edge_convert(path, *digits_args(calib_dir, out)), "dynamic dimensions", "(?, ?, ?, 1)"
    )
    assert not out.exists()


def test_labels_that_do_not_match_the_output_size(edge_convert, calib_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    out = tmp_path / "x.edgebundle"
    _one_line_failure(
        edge_convert(FLOAT, *digits_args(calib_dir, out, "--labels", labels)),
        "3 labels",
        "10 classes",
    )
    assert not out.exists()


def test_accuracy_drop_over_the_gate_keeps_no_bundle(edge_convert, heldout, labels_file, tmp_path):
    # Calibrating on black images only squeezes the int8 input range to nothing: the
    # quantized model then loses most of its accuracy, which the gate must catch.
    from PIL import Image

    black = tmp_path / "black"
    black.mkdir()
    for i in range(4):
        Image.new("L", (8, 8)).save(black / f"{i}.png")
    out = tmp_path / "x.edgebundle"
    done = edge_convert(
        FLOAT, *digits_args(black, out, "--labels", labels_file, "--validation", heldout)
    )
    line = _one_line_failure(done, "accuracy drop", "--max-accuracy-drop 0.01", "no bundle written")
    assert not out.exists(), line
    assert list(tmp_path.glob("*.edgebundle*")) == []  # no temporary file either


def test_not_a_model(edge_convert, calib_dir, tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"\x00" * 64)
    _one_line_failure(
        edge_convert(bogus, *digits_args(calib_dir, tmp_path / "x.edgebundle")), "not a keras"
    )


def test_bad_version(edge_convert, calib_dir, tmp_path):
    args = digits_args(calib_dir, tmp_path / "x.edgebundle")
    args[args.index("1.0.0")] = "one"
    _one_line_failure(edge_convert(FLOAT, *args), "--version", "semantic version")


def test_already_quantized_tflite(edge_convert, calib_dir, tmp_path):
    out = tmp_path / "x.edgebundle"
    done = edge_convert(MODELS / "digits_int8.tflite", *digits_args(calib_dir, out))
    _one_line_failure(done, "already quantized", "give the float model")
    assert not out.exists()
