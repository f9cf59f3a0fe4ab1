"""Float ``.tflite`` inputs: quantized by ai-edge-quantizer, TensorFlow never imported."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from convert_helpers import MODELS, ROOT, digits_args

pytestmark = pytest.mark.converter

FLOAT = MODELS / "digits_float.tflite"

_PROBE = """
import json, sys
from converter.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))
print(json.dumps({"rc": rc, "heavy_modules": heavy[:5]}), file=sys.stderr)
"""


def test_float_tflite_converts_without_importing_tensorflow(
    calib_dir, heldout, labels_file, tmp_path
):
    out = tmp_path / "f.edgebundle"
    args = digits_args(calib_dir, out, "--labels", labels_file, "--validation", heldout, "--json")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(FLOAT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    probe = json.loads(done.stderr.strip().splitlines()[-1])
    assert probe == {"rc": 0, "heavy_modules": []}, done.stderr
    report = json.loads(done.stdout)
    assert report["converter"] == "ai-edge-quantizer"
    assert report["validation"]["accuracy_drop"] <= 0.01
    assert report["input"]["dtype"] == "int8"
    assert out.exists()


def test_probe_detects_tensorflow_when_it_is_imported():
    """The probe above is able to fail: importing the TensorFlow backend is seen."""
    code = "import sys; import converter.tf_backend; print('tensorflow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.stdout.strip().splitlines()[-1] == "True"


def test_uint8_io_from_float_tflite_runs_on_the_interpreter(
    edge_convert, calib_dir, heldout, labels_file, tmp_path
):
    out = tmp_path / "u.edgebundle"
    report = edge_convert(
        FLOAT,
        *digits_args(
            calib_dir,
            out,
            "--labels",
            labels_file,
            "--validation",
            heldout,
            "--input-type",
            "uint8",
            "--json",
        ),
    ).report()
    assert report["input"]["dtype"] == "uint8"
    assert report["validation"]["accuracy_drop"] <= 0.01
    with tarfile.open(out) as tar:
        model = tar.extractfile("model.tflite").read()  # type: ignore[union-attr]
    from edge_runtime.inference.backend import make_interpreter

    interp = make_interpreter(model)
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and outp["dtype"] == np.uint8
    assert inp["quantization"][1] == 0  # int8 zero point -128 shifted by 128
    replay = ROOT / "tests" / "converter" / "replay_golden.py"
    for python in (sys.executable, ROOT / ".venv-tflite" / "bin" / "python"):
        if not Path(python).exists():
            continue
        done = subprocess.run(
            [str(python), str(replay), str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["input_dtype"] == "uint8" and max(result["max_diff"]) <= 1, result


def test_text_report_and_mixed_folder_skips_non_images_with_a_warning(
    edge_convert, calib_dir, tmp_path
):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for png in sorted(calib_dir.iterdir())[:20]:
        (mixed / png.name).write_bytes(png.read_bytes())
    (mixed / "notes.txt").write_text("not an image")
    (mixed / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    done = edge_convert(FLOAT, *digits_args(mixed, tmp_path / "m.edgebundle"))
    assert done.returncode == 0, done.stderr
    assert "skipping 1 non-image files" in done.stderr
    assert "broken.jpg" in done.stderr
    assert "agreement" in done.stdout and "ops" in done.stdout
    assert "calibrate  20 images" in done.stdout


def _class_folders(root, names, images, labels, count):
    from PIL import Image

    for i, (pixels, label) in enumerate(zip(images[:count], labels[:count])):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def test_validation_class_folders_give_the_same_accuracy_as_the_npz(
    edge_convert, calib_dir, heldout, labels_file, tmp_path
):
    names = labels_file.read_text().split()
    with np.load(heldout) as data:
        x, y = data["x"], data["y"]
    _class_folders(tmp_path / "val", names, x, y, 120)
    np.savez(tmp_path / "val.npz", x=x[:120], y=y[:120])
    from_dirs = edge_convert(
        FLOAT,
        *digits_args(
            calib_dir,
            tmp_path / "a.edgebundle",
            "--labels",
            labels_file,
            "--validation",
            tmp_path / "val",
            "--progress",
            "--json",
        ),
    )
    report = from_dirs.report()
    assert (
        "validation [" in from_dirs.stderr and "calibration [" in from_dirs.stderr
    )  # progress bars
    from_npz = edge_convert(
        FLOAT,
        *digits_args(
            calib_dir,
            tmp_path / "b.edgebundle",
            "--labels",
            labels_file,
            "--validation",
            tmp_path / "val.npz",
            "--json",
        ),
    ).report()
    assert report["validation"]["samples"] == 120
    for key in ("float_top1", "int8_top1", "top1_agreement"):
        assert report["validation"][key] == from_npz["validation"][key], key


def test_validation_folder_with_a_class_not_in_the_labels(
    edge_convert, calib_dir, labels_file, tmp_path
):
    from PIL import Image

    (tmp_path / "val" / "eleven").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "val" / "eleven" / "a.png")
    out = tmp_path / "x.edgebundle"
    done = edge_convert(
        FLOAT,
        *digits_args(calib_dir, out, "--labels", labels_file, "--validation", tmp_path / "val"),
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "edge-convert: error: validation subfolders eleven are not in the labels file"
    ]
    assert not out.exists()
