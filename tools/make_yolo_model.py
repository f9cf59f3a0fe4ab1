#!/usr/bin/env python3
"""Write the committed YOLO-layout test model, tests/fixtures/models/yolov8_int8.tflite.

A 32x32 RGB int8 model whose one output is a YOLOv8 head, ``[1, 4 + 2, 21]`` (21 = the
cells of strides 8, 16 and 32 at 32x32), every value a sigmoid, so boxes are centre x,
centre y, width, height normalised to 0..1 as Ultralytics' TFLite export writes them.
Fixed random weights (no training, no download): the model is for checking that the
runtime reads, decodes and answers with such a head, not for finding anything.

    .venv/bin/python tools/make_yolo_model.py [--out FILE]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES, CELLS = 32, 2, 21


def build() -> bytes:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((SIZE, SIZE, 3))
    x = tf.keras.layers.Conv2D(4, 3, strides=8, padding="same", activation="relu")(inputs)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense((4 + CLASSES) * CELLS, activation="sigmoid")(x)
    outputs = tf.keras.layers.Reshape((4 + CLASSES, CELLS))(x)
    model = tf.keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)

    def calibration():  # type: ignore[no-untyped-def]
        for _ in range(32):
            yield [rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "tests" / "fixtures" / "models" / "yolov8_int8.tflite"
    )
    args = parser.parse_args()
    args.out.write_bytes(build())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
