"""Benchmark inputs, made here and cached: a MobileNetV2-sized int8 classifier at 224x224
with random weights (converted by ``edge-convert``) and camera-sized JPEG photos made
from the sample photos scikit-image ships; the committed small models with an input each."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDGE_BENCH_CACHE", Path.home() / ".cache" / "edge-runtime-bench"))
HOST_PYTHON = ROOT / ".venv" / "bin" / "python"
SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}
FIXTURES = ROOT / "tests" / "fixtures" / "models"

_BUILD = """
import sys
import tensorflow as tf
from PIL import Image
from skimage import data
tf.keras.utils.set_random_seed(0)
out = sys.argv[1]
tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)).save(out + "/mnv2.keras")
import os
os.makedirs(out + "/calibration", exist_ok=True)
for name in ("chelsea", "coffee", "astronaut", "rocket", "cat", "hubble_deep_field"):
    Image.fromarray(getattr(data, name)()).convert("RGB").save(f"{out}/calibration/{name}.jpg")
"""


def mobilenet_bundle() -> Path:
    """The int8 MobileNetV2 bundle; converted once (needs the host venv's TensorFlow)."""
    bundle = CACHE / "mobilenet_v2_int8.edgebundle"
    if bundle.exists():
        return bundle
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"building {bundle} (once; about half a minute)", file=sys.stderr)
    subprocess.run([str(HOST_PYTHON), "-c", _BUILD, str(CACHE)], check=True, timeout=900)
    subprocess.run(
        [
            str(HOST_PYTHON),
            "-m",
            "converter.cli",
            str(CACHE / "mnv2.keras"),
            "--calibration",
            str(CACHE / "calibration"),
            "--name",
            "mobilenet-v2",
            "--version",
            "1.0.0",
            "--resize",
            "crop",
            "--out",
            str(bundle),
        ],
        check=True,
        timeout=900,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return bundle


def bundle_model(bundle: Path, folder: Path) -> Path:
    """The bundle's model file written into ``folder``, for the scripts that take a bare
    model."""
    out = folder / f"{bundle.stem}.tflite"
    with tarfile.open(bundle) as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        out.write_bytes(_member(tar, str(manifest["model"])).read())
    return out


def _manifest(bundle: Path) -> dict[str, Any]:
    with tarfile.open(bundle) as tar:
        return dict(json.load(_member(tar, "manifest.json")))


def describe(bundle: Path) -> str:
    """A bundle's model in a few words: name, version and input."""
    manifest = _manifest(bundle)
    spec = manifest.get("input") or {}
    shape = "x".join(str(d) for d in (spec.get("shape") or [])[1:])
    return f"{manifest.get('name')} {manifest.get('version')} ({shape} {spec.get('dtype')} input)"


def normalization_args(bundle: Path) -> list[str]:
    """The hand-written script's ``--mean``/``--std``: what the bundle's input declares
    (what its author would have typed in), else the script's default."""
    spec = _manifest(bundle).get("input") or {}
    out = []
    for key in ("mean", "std"):
        value = spec.get(key)
        if isinstance(value, (int, float)):
            out += [f"--{key}", str(value)]
        elif isinstance(value, list):  # one per channel
            out += [f"--{key}", ",".join(str(v) for v in value)]
    return out


def resize_mode(bundle: Path) -> str:
    """How the bundle's input is fitted to the model: stretch, crop or letterbox."""
    return str((_manifest(bundle).get("input") or {}).get("resize") or "stretch")


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"the bundle has no file {name}")
    return member


def photo_jpeg(size: str) -> bytes:
    """scikit-image's astronaut photo scaled to a camera size, as a quality-90 JPEG."""
    from PIL import Image
    from skimage import data

    photo = data.astronaut()  # type: ignore[no-untyped-call]  # scikit-image has no types
    image = Image.fromarray(photo).convert("RGB").resize(SIZES[size], Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def digit_png() -> bytes:
    """The first held-out digit (8x8 grayscale) as the PNG a client would send."""
    import numpy as np
    from PIL import Image

    pixels = np.load(FIXTURES / "digits_test.npz")["x"][0]
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


def small_models() -> dict[str, tuple[Path, bytes]]:
    """The committed small models, each with a request image that suits it."""
    return {
        "digits_int8": (FIXTURES / "digits_int8.tflite", digit_png()),
        "detect_int8": (FIXTURES / "detect_int8.tflite", photo_jpeg("640x480")),
    }
