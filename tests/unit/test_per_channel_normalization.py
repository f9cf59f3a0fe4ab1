"""A mean and std per channel (``--mean 123.675,116.28,103.53``) wherever a mean/std is
taken: flags, manifest, model metadata, preprocessing, the converter's input spec."""

from __future__ import annotations

import argparse

import bundle_factory as bf
import numpy as np
import pytest
from PIL import Image

from converter.calibration import array_to_tensor, float_spec
from edge_runtime.bundle.manifest import parse_manifest
from edge_runtime.cli.common import channel_floats
from edge_runtime.errors import BundleError, ConfigError, InputError, ModelError
from edge_runtime.inference.engine import Engine, InputOverrides
from edge_runtime.inference.preprocess import image_to_tensor, input_lookup_table
from edge_runtime.inference.types import (
    InputSpec,
    Quantization,
    channel_json,
    normalization,
)
from tests.conftest import IMAGES, MODELS, assert_one_line_error

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
RGB = np.array([[[10, 120, 250], [0, 255, 128]]], dtype=np.uint8)  # 1x2 image


def test_float_input_takes_each_channel_its_own_mean_and_std() -> None:
    spec = InputSpec(1, 2, 3, "float32", normalization=normalization(IMAGENET_MEAN, IMAGENET_STD))
    tensor = image_to_tensor(Image.fromarray(RGB), spec)
    expected = (RGB.astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(tensor[0], expected, rtol=1e-6)
    assert input_lookup_table(spec).shape == (256, 3)


def test_quantized_input_per_channel_follows_the_contract_formula() -> None:
    quant = Quantization(0.0186, -14)
    spec = InputSpec(1, 2, 3, "int8", quant, normalization(IMAGENET_MEAN, IMAGENET_STD))
    tensor = image_to_tensor(Image.fromarray(RGB), spec)
    value = (RGB.astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD
    expected = np.clip(np.round(value / 0.0186 - 14), -128, 127)
    assert np.array_equal(tensor[0].astype(np.int64), expected.astype(np.int64))


def test_equal_values_collapse_to_one_and_keep_the_single_table() -> None:
    norm = normalization((127.5, 127.5, 127.5), [127.5])
    assert (norm.mean, norm.std, norm.per_channel) == (127.5, 127.5, False)
    assert channel_json(norm.mean) == 127.5
    assert channel_json(normalization(IMAGENET_MEAN, 1).mean) == list(IMAGENET_MEAN)
    spec = InputSpec(1, 2, 3, "float32", normalization=norm)
    assert input_lookup_table(spec).shape == (256,)


def test_values_for_another_channel_count_are_refused() -> None:
    spec = InputSpec(1, 2, 1, "float32", normalization=normalization(IMAGENET_MEAN, 1))
    with pytest.raises(InputError, match="3 mean values for an input of 1 channel"):
        input_lookup_table(spec)
    with pytest.raises(ConfigError, match="--mean/--std: 3 mean values"):
        float_spec((1, 8, 8, 1), IMAGENET_MEAN, 1.0)


def test_flags_take_one_number_or_one_per_channel() -> None:
    assert channel_floats("123.675,116.28,103.53") == IMAGENET_MEAN
    assert channel_floats("127.5") == 127.5
    assert channel_floats("2,2,2") == 2.0
    for bad in ("1,x,3", "1,2,3,4,5", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            channel_floats(bad)


def test_the_converter_calibrates_through_the_same_per_channel_tables() -> None:
    spec = float_spec((1, 1, 2, 3), IMAGENET_MEAN, IMAGENET_STD)
    expected = (RGB.astype(np.float64) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(array_to_tensor(RGB, spec)[0], expected, rtol=1e-6)


def _manifest_input(**values: object) -> dict:
    m = bf.filled_manifest()
    m["input"] = dict(m["input"], shape=[1, 8, 8, 3], color="RGB", **values)
    return m


def test_manifest_input_takes_a_list_per_channel_and_still_a_number() -> None:
    parsed = parse_manifest(_manifest_input(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)))
    assert parsed.input.mean == IMAGENET_MEAN and parsed.input.std == IMAGENET_STD
    assert parse_manifest(_manifest_input(mean=127.5, std=127.5)).input.mean == 127.5
    with pytest.raises(BundleError, match="list of 3 numbers"):
        parse_manifest(_manifest_input(mean=[1.0, 2.0], std=1.0))
    with pytest.raises(BundleError, match="input.std must be above 0"):
        parse_manifest(_manifest_input(mean=1.0, std=[1.0, 0.0, 1.0]))


def test_the_engine_takes_per_channel_flags_and_refuses_a_channel_mismatch() -> None:
    engine = Engine.load(
        MODELS / "yolov8_int8.tflite",
        overrides=InputOverrides(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
    assert engine.input_spec.normalization == normalization(IMAGENET_MEAN, IMAGENET_STD)
    prepared = engine.prepare((IMAGES / "chelsea.jpg").read_bytes())
    assert prepared.tensor.shape == (1, 32, 32, 3)
    with pytest.raises(ModelError, match="3 mean values for an input of 1 channel"):
        Engine.load(MODELS / "digits_int8.tflite", overrides=InputOverrides(mean=IMAGENET_MEAN))


def test_predict_flags_per_channel(edge_runtime_cli) -> None:
    done = edge_runtime_cli(
        "predict",
        "--model",
        MODELS / "yolov8_int8.tflite",
        "--mean",
        "123.675,116.28,103.53",
        "--std",
        "58.395,57.12,57.375",
        "--json",
        IMAGES / "chelsea.jpg",
    )
    assert done.returncode == 0, done.stderr
    done = edge_runtime_cli(
        "predict",
        "--model",
        MODELS / "digits_int8.tflite",
        "--mean",
        "1,2,3",
        IMAGES / "digit_1.png",
    )
    assert_one_line_error(done, "3 mean values for an input of 1 channel")
