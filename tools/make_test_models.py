#!/usr/bin/env python3
"""Regenerate the committed test models in tests/fixtures/models/ (run in the host venv).

Deterministic (fixed seeds, fixed held-out split): trains a small CNN on scikit-learn's
digits and writes float, int8 and uint8 forms, a copy with embedded labels, a small
detection-shaped int8 model, a digits-shaped model that is correct but slow (for the
update health gate), the held-out digits, the labels, a digits bundle and
``models.json`` (normalisation used and held-out top-1 accuracy measured with the
interpreter on this host). The int8/uint8 models and the bundle come from the
project's own converter (``edge-convert``), so the fixtures are what users get.

    .venv/bin/python tools/make_test_models.py [--out DIR] [--epochs N] [--only slow]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from PIL import Image  # noqa: E402

from edge_runtime.inference.backend import make_interpreter  # noqa: E402
from edge_runtime.inference.preprocess import image_to_tensor  # noqa: E402
from edge_runtime.inference.types import InputSpec, Normalization, Quantization  # noqa: E402

SEED = 0
LABELS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_MEAN, DIGITS_STD = 0.0, 255.0  # float input = pixel / 255
DETECT_SIZE, DETECT_GRID = 32, 4


# ---------------------------------------------------------------- data


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, 8, 8) images (0..16 scaled to 0..255), split
    into a fixed training set and a fixed held-out set of 360 images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=360,
        random_state=SEED,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


def float_inputs(images: np.ndarray) -> np.ndarray:
    """Images to float (N, H, W, C) through the runtime's own preprocessing."""
    spec = _float_spec(images.shape[1], images.shape[2], 1 if images.ndim == 3 else images.shape[3])
    return np.concatenate([image_to_tensor(Image.fromarray(img), spec) for img in images])


def _float_spec(
    h: int, w: int, c: int, mean: float = DIGITS_MEAN, std: float = DIGITS_STD
) -> InputSpec:
    return InputSpec(
        h, w, c, "float32", normalization=Normalization(mean, std), color="L" if c == 1 else "RGB"
    )


# ---------------------------------------------------------------- digits


def train_digits(epochs: int) -> Any:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train, _, _ = digits_split()
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1), name="image"),
            tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            tf.keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(float_inputs(x_train), y_train, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    bare = tf.keras.models.clone_model(model)  # without optimizer state: a small file
    bare.set_weights(model.get_weights())
    return bare


def make_slow_digits() -> bytes:
    """An int8 model with the digits model's input and output (8x8 grayscale in, 10
    scores out) that upsamples to 512x512 and convolves there: a few KB of weights and
    some thousand times the digits model's invoke time (tens of ms on a desktop core).
    Random weights; what matters is that it is valid, deterministic and slow."""
    import tensorflow as tf

    from converter.tf_backend import convert

    tf.keras.utils.set_random_seed(SEED)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1), name="image"),
            tf.keras.layers.UpSampling2D(64),
            tf.keras.layers.Conv2D(24, 3, padding="same", activation="relu"),
            tf.keras.layers.Conv2D(24, 3, padding="same", activation="relu"),
            tf.keras.layers.Conv2D(24, 3, padding="same", activation="relu"),
            tf.keras.layers.Conv2D(24, 3, padding="same", activation="relu"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ]
    )
    x_train, _, _, _ = digits_split()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slow.keras"
        model.save(path)
        calib = float_inputs(x_train[:50])
        return convert(path, lambda shape: [t[None] for t in calib], io_type="int8").int8_model


def write_calibration_images(images: np.ndarray, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:04d}.png")


def interpreter_accuracy(
    model: bytes, images: np.ndarray, labels: np.ndarray, spec_norm: Normalization
) -> float:
    interp = make_interpreter(model)
    detail = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    scale, zp = detail["quantization"]
    _, h, w, c = detail["shape"]
    spec = InputSpec(
        int(h),
        int(w),
        int(c),
        np.dtype(detail["dtype"]).name,
        Quantization(float(scale), int(zp)),
        spec_norm,
        color="L" if c == 1 else "RGB",
    )
    hits = 0
    for img, label in zip(images, labels):
        interp.set_tensor(detail["index"], image_to_tensor(Image.fromarray(img), spec))
        interp.invoke()
        hits += int(np.argmax(interp.get_tensor(out["index"])[0]) == label)
    return hits / len(labels)


def append_labels(model: bytes, labels: tuple[str, ...]) -> bytes:
    """The model with ``labels.txt`` in a zip appended after the flatbuffer, as TFLite
    metadata associated files are stored."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo("labels.txt", date_time=(2020, 1, 1, 0, 0, 0))
        zf.writestr(info, "\n".join(labels) + "\n")
    return model + buf.getvalue()


# ---------------------------------------------------------------- detection


def detect_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic RGB images with 1-3 bright squares; per-anchor class and box targets."""
    size, grid = DETECT_SIZE, DETECT_GRID
    cell = size // grid
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    classes = np.zeros((n, grid * grid), np.int64)
    boxes = np.zeros((n, grid * grid, 4), np.float32)
    for i in range(n):
        cells = rng.choice(grid * grid, size=rng.integers(1, 4), replace=False)
        for a in cells:
            gy, gx = divmod(int(a), grid)
            side = int(rng.integers(5, 10))
            cy = gy * cell + cell / 2 + rng.uniform(-1.5, 1.5)
            cx = gx * cell + cell / 2 + rng.uniform(-1.5, 1.5)
            y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
            y0, x0 = max(0, min(size - side, y0)), max(0, min(size - side, x0))
            images[i, y0 : y0 + side, x0 : x0 + side] = rng.integers(200, 256, 3)
            classes[i, a] = 1
            boxes[i, a] = _encode(
                (y0 + side / 2) / size, (x0 + side / 2) / size, side / size, side / size, a
            )
    return images, classes, boxes


def truth_boxes(boxes: np.ndarray, classes: np.ndarray) -> list[tuple[float, float, float, float]]:
    """The (ymin, xmin, ymax, xmax) boxes of one image's squares, from its anchor targets."""
    out = []
    for a in np.flatnonzero(classes):
        ay, ax, ah, aw = _anchors()[a]
        ty, tx, th, tw = boxes[a]
        cy, cx = ty / _SCALES[0] * ah + ay, tx / _SCALES[1] * aw + ax
        h, w = np.exp(th / _SCALES[2]) * ah, np.exp(tw / _SCALES[3]) * aw
        out.append(
            tuple(round(float(v), 4) for v in (cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2))
        )
    return out  # type: ignore[return-value]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detection_quality(model: bytes, n: int = 50, seed: int = 123) -> dict[str, float]:
    """Recall and precision (score >= 0.5, IoU >= 0.5) on fresh synthetic images, with
    the int8 input the contract's default gives (pixel - 128)."""
    interp = make_interpreter(model)
    inp = interp.get_input_details()[0]
    images, classes, boxes = detect_data(n, np.random.default_rng(seed))
    found = truths = kept = correct = 0
    for img, cls, enc in zip(images, classes, boxes):
        interp.set_tensor(inp["index"], (img.astype(np.int16) - 128).astype(np.int8)[None])
        interp.invoke()
        det_boxes, _, scores, count = (interp.get_tensor(i) for i in _detect_outputs(model))
        dets = [tuple(det_boxes[0][k]) for k in range(int(count[0])) if scores[0][k] >= 0.5]
        truth = truth_boxes(enc, cls)
        truths += len(truth)
        kept += len(dets)
        found += sum(any(_iou(t, d) >= 0.5 for d in dets) for t in truth)
        correct += sum(any(_iou(t, d) >= 0.5 for t in truth) for d in dets)
    return {"recall": round(found / truths, 4), "precision": round(correct / max(kept, 1), 4)}


def _detect_outputs(model: bytes) -> tuple[int, ...]:
    """Tensor indices of boxes, classes, scores, count: the post-processing op's outputs."""
    from edge_runtime.inference.modelfile import read_model

    order = read_model(model).detection_outputs
    assert order is not None, "no TFLite_Detection_PostProcess op in the detection model"
    return order


def _anchors() -> np.ndarray:
    """(ycenter, xcenter, h, w) per grid cell, normalised."""
    g = DETECT_GRID
    return np.array(
        [((y + 0.5) / g, (x + 0.5) / g, 1 / g, 1 / g) for y in range(g) for x in range(g)],
        np.float32,
    )


_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w: the usual SSD box coder scales


def _encode(cy: float, cx: float, h: float, w: float, anchor: int) -> np.ndarray:
    ay, ax, ah, aw = _anchors()[anchor]
    return np.array(
        [
            (cy - ay) / ah * _SCALES[0],
            (cx - ax) / aw * _SCALES[1],
            np.log(h / ah) * _SCALES[2],
            np.log(w / aw) * _SCALES[3],
        ],
        np.float32,
    )


def make_detector(epochs: int) -> bytes:
    import tensorflow as tf

    from converter.tf_backend import convert_saved_model

    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    images, classes, boxes = detect_data(1200, rng)
    n_anchor = DETECT_GRID * DETECT_GRID
    inp = tf.keras.Input((DETECT_SIZE, DETECT_SIZE, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    box = tf.keras.layers.Reshape((n_anchor, 4), name="box_encodings")(
        tf.keras.layers.Conv2D(4, 1)(x)
    )
    cls = tf.keras.layers.Reshape((n_anchor, 2))(tf.keras.layers.Conv2D(2, 1)(x))
    cls = tf.keras.layers.Softmax(name="class_predictions")(cls)
    model = tf.keras.Model(inp, [box, cls])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(3e-3), loss=["mse", "sparse_categorical_crossentropy"]
    )
    x_train = images.astype(np.float32) / 255.0
    model.fit(x_train, [boxes, classes], epochs=epochs, batch_size=32, verbose=0)

    anchors = tf.constant(_anchors())
    nms = " ".join(
        [
            'name: "TFLite_Detection_PostProcess"',
            'attr { key: "max_detections" value { i: 5 } }',
            'attr { key: "max_classes_per_detection" value { i: 1 } }',
            'attr { key: "detections_per_class" value { i: 5 } }',
            'attr { key: "use_regular_nms" value { b: false } }',
            'attr { key: "nms_score_threshold" value { f: 0.300000 } }',
            'attr { key: "nms_iou_threshold" value { f: 0.500000 } }',
            'attr { key: "num_classes" value { i: 1 } }',
            'attr { key: "y_scale" value { f: 10.0 } }',
            'attr { key: "x_scale" value { f: 10.0 } }',
            'attr { key: "h_scale" value { f: 5.0 } }',
            'attr { key: "w_scale" value { f: 5.0 } }',
        ]
    )

    @tf.function(experimental_implements=nms)
    def postprocess(box_encodings: Any, class_predictions: Any, anchors: Any) -> Any:
        # A placeholder body: the TFLite converter replaces the whole function with the
        # TFLite_Detection_PostProcess custom op named in ``experimental_implements``.
        boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
        classes = tf.constant(0.0, dtype=tf.float32, name="classes")
        scores = tf.constant(0.0, dtype=tf.float32, name="scores")
        count = tf.constant(0.0, dtype=tf.float32, name="num_detections")
        return boxes, classes, scores, count

    @tf.function(
        input_signature=[tf.TensorSpec((1, DETECT_SIZE, DETECT_SIZE, 3), tf.float32, name="image")]
    )
    def serve(image: Any) -> Any:
        box_enc, cls_pred = model(image, training=False)
        return postprocess(box_enc, cls_pred, anchors)

    def representative() -> Any:
        for img in images[:100]:
            yield img[None].astype(np.float32) / 255.0

    module = tf.Module()
    # Keras 3 variables must be tracked as TensorFlow variables to be saved with the graph.
    module.weights = [v.value for v in model.variables]
    module.serve = serve
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(module, folder, signatures={"serving_default": serve})
        return convert_saved_model(
            Path(folder), representative, io_type="int8", allow_custom_ops=True, float_output=True
        )


# ---------------------------------------------------------------- sample images


def write_sample_images(folder: Path) -> None:
    """A few small images for tests: held-out digits as 8x8 PNGs (label in the name),
    a detection sample, and two real photos from scikit-image, reduced."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    _, _, x_test, y_test = digits_split()
    for label in range(10):
        i = int(np.flatnonzero(y_test == label)[0])
        Image.fromarray(x_test[i]).save(folder / f"digit_{label}.png", optimize=True)
    images, _, _ = detect_data(1, np.random.default_rng(7))
    Image.fromarray(images[0]).save(folder / "squares.png", optimize=True)
    for name in ("chelsea", "coffee"):
        img = Image.fromarray(getattr(data, name)())
        img.thumbnail((160, 160))
        img.save(folder / f"{name}.jpg", quality=85)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "models")
    parser.add_argument("--images", type=Path, default=ROOT / "tests" / "fixtures" / "images")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument(
        "--direct",
        action="store_true",
        help="convert with converter.tf_backend directly (no edge-convert, no bundle)",
    )
    parser.add_argument("--only", choices=["slow"], help="regenerate this model alone")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.only == "slow":
        _write_slow(out)
        return 0
    x_train, _, x_test, y_test = digits_split()
    norm = Normalization(DIGITS_MEAN, DIGITS_STD)
    info: dict[str, Any] = {"generator": "tools/make_test_models.py", "seed": SEED, "models": {}}

    (out / "digits_labels.txt").write_text("\n".join(LABELS) + "\n")
    np.savez_compressed(out / "digits_test.npz", x=x_test, y=y_test)

    with tempfile.TemporaryDirectory() as tmp:
        keras_path = Path(tmp) / "digits.keras"
        train_digits(args.epochs).save(keras_path)
        calib = Path(tmp) / "calibration"
        write_calibration_images(x_train[:200], calib)
        results: dict[str, dict[str, Any]] = {"int8": {}}
        for io_type in ("int8", "uint8"):
            if args.direct:
                _convert_direct(keras_path, x_train[:200], io_type, out)
                continue
            bundle = Path(tmp) / f"digits_{io_type}.edgebundle"
            results[io_type] = _convert(
                keras_path, calib, out / "digits_test.npz", bundle, io_type, out
            )
            members = _bundle_members(bundle)
            (out / f"digits_{io_type}.tflite").write_bytes(members["model.tflite"])
            if io_type == "int8":
                (out / "digits_float.tflite").write_bytes(members["model_float.tflite"])
        if not args.direct:  # the committed bundle, without the float model
            _convert(
                keras_path,
                calib,
                out / "digits_test.npz",
                out / "digits_v1.edgebundle",
                "int8",
                out,
                keep_float=False,
            )
    (out / "digits_labeled.tflite").write_bytes(
        append_labels((out / "digits_int8.tflite").read_bytes(), LABELS)
    )

    for name, file in (
        ("digits_float", "digits_float.tflite"),
        ("digits_int8", "digits_int8.tflite"),
        ("digits_uint8", "digits_uint8.tflite"),
        ("digits_labeled", "digits_labeled.tflite"),
    ):
        acc = interpreter_accuracy((out / file).read_bytes(), x_test, y_test, norm)
        info["models"][name] = {
            "file": file,
            "input": "8x8 grayscale",
            "mean": DIGITS_MEAN,
            "std": DIGITS_STD,
            "labels": "digits_labels.txt" if name != "digits_labeled" else "embedded labels.txt",
            "heldout": "digits_test.npz",
            "heldout_top1": round(acc, 6),
        }
    if not args.direct:
        info["models"]["digits_v1_bundle"] = {
            "file": "digits_v1.edgebundle",
            "name": "digits",
            "version": "1.0.0",
            "mean": DIGITS_MEAN,
            "std": DIGITS_STD,
            "heldout_top1": info["models"]["digits_int8"]["heldout_top1"],
            "converter_report": results["int8"].get("validation"),
        }

    (out / "detect_int8.tflite").write_bytes(make_detector(max(8, args.epochs)))
    detect_quality = detection_quality((out / "detect_int8.tflite").read_bytes())
    sample, sample_classes, sample_boxes = detect_data(1, np.random.default_rng(7))
    info["models"]["detect_int8"] = {
        "heldout": "detect_data(50, default_rng(123)) in tools/make_test_models.py",
        "heldout_recall": detect_quality["recall"],
        "heldout_precision": detect_quality["precision"],
        "sample_image": "images/squares.png",
        "sample_truth_boxes": truth_boxes(sample_boxes[0], sample_classes[0]),
        "file": "detect_int8.tflite",
        "input": f"{DETECT_SIZE}x{DETECT_SIZE} RGB int8 (pixel - 128)",
        "mean": 0.0,
        "std": 255.0,
        "detects": "bright squares on a dark noisy background",
        "outputs": "TFLite_Detection_PostProcess: boxes, classes, scores, count",
    }
    write_sample_images(args.images)
    (out / "models.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    _write_slow(out)
    for f in sorted(out.iterdir()):
        print(f"{f.name:28s} {f.stat().st_size:8d} bytes")
    return 0


def _write_slow(out: Path) -> None:
    """``slow_int8.tflite`` and its entry in ``models.json``."""
    (out / "slow_int8.tflite").write_bytes(make_slow_digits())
    info = json.loads((out / "models.json").read_text())
    info["models"]["slow_int8"] = {
        "file": "slow_int8.tflite",
        "input": "8x8 grayscale, int8 (as digits_int8)",
        "outputs": "10 scores (random weights, no meaning)",
        "purpose": (
            "valid, tens of ms per invoke against the digits model's tens of us: a service"
            " time some 30x the digits pipeline's (update health gate)"
        ),
    }
    (out / "models.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _convert(
    model: Path,
    calib: Path,
    validation: Path,
    bundle: Path,
    io_type: str,
    out: Path,
    *,
    keep_float: bool = True,
) -> dict[str, Any]:
    """Run edge-convert from the model's folder, so the report names files, not temp paths."""
    exe = Path(sys.executable).with_name("edge-convert")
    cmd = [
        str(exe),
        model.name,
        "--calibration",
        str(calib.relative_to(model.parent)),
        "--out",
        str(bundle.resolve()),
        "--name",
        "digits",
        "--version",
        "1.0.0",
        "--labels",
        str((out / "digits_labels.txt").resolve()),
        "--validation",
        _beside(validation, model.parent),
        "--input-type",
        io_type,
        "--mean",
        str(DIGITS_MEAN),
        "--std",
        str(DIGITS_STD),
        "--json",
    ] + (["--keep-float"] if keep_float else [])
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=600, cwd=model.parent
    )
    if done.returncode != 0:
        raise SystemExit(f"edge-convert failed: {done.stderr.strip()}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _convert_direct(model: Path, calib: np.ndarray, io_type: str, out: Path) -> None:
    from converter.tf_backend import convert

    converted = convert(model, lambda: (t[None] for t in float_inputs(calib)), io_type=io_type)
    (out / f"digits_{io_type}.tflite").write_bytes(converted.int8_model)
    (out / "digits_float.tflite").write_bytes(converted.float_model)


def _beside(path: Path, folder: Path) -> str:
    """A copy of ``path`` in ``folder``, named relatively."""
    (folder / path.name).write_bytes(path.read_bytes())
    return path.name


def _bundle_members(bundle: Path) -> dict[str, bytes]:
    import tarfile

    with tarfile.open(bundle) as tar:
        members: list[tarfile.TarInfo] = [m for m in tar.getmembers() if m.isfile()]
        return {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
