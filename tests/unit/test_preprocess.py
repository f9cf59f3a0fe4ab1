"""Image decoding, resizing and quantization: the code shared by device and converter."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from edge_runtime.errors import InputError
from edge_runtime.inference.preprocess import (
    DECODE_BLOCK,
    decode_image,
    image_to_tensor,
    input_lookup_table,
    preprocess,
    resize,
)
from edge_runtime.inference.types import InputSpec, Normalization, Quantization


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], -1), "RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_decodes_each_supported_format(fmt: str) -> None:
    img = decode_image(encode(gradient(), fmt))
    assert img.mode == "RGB" and img.size == (64, 48)


def test_grayscale_and_rgba_become_the_models_channels() -> None:
    rgba = gradient().convert("RGBA")
    assert decode_image(encode(rgba, "PNG"), channels=3).mode == "RGB"
    assert decode_image(encode(rgba, "PNG"), channels=1).mode == "L"
    gray = gradient().convert("L")
    assert decode_image(encode(gray, "PNG"), channels=3).mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    img = gradient(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = encode(img, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (32, 64)


def test_large_jpeg_is_decoded_at_reduced_size_when_a_target_is_given() -> None:
    data = encode(gradient(1600, 1200), "JPEG", quality=80)
    full = decode_image(data)
    reduced = decode_image(data, target_size=(224, 224))
    assert full.size == (1600, 1200)
    # draft picks the largest 1/2^k reduction that still covers 224x224: 1/4 here.
    assert reduced.size == (400, 300)


def test_an_image_in_memory_goes_to_the_decoder_in_one_call() -> None:
    """Pillow reads a file in 64 KiB pieces and calls its decoder for each, giving the
    GIL up and taking it back every time; bytes already in memory go in one call."""
    noise = np.random.default_rng(7).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise, "RGB"), "JPEG", quality=95)
    assert len(data) > 4 * 65536
    calls: list[str] = []

    def count(frame: object, event: str, arg: object) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == "decode":
            calls.append(event)

    sys.setprofile(count)
    try:
        img = decode_image(data, target_size=(224, 224))
    finally:
        sys.setprofile(None)
    assert img.size == (400, 300)
    assert len(calls) == 1

    # a photo of several MB goes in pieces of DECODE_BLOCK: each read is a copy that size
    big = np.random.default_rng(8).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    data = encode(Image.fromarray(big, "RGB"), "JPEG", quality=95)
    assert len(data) > 2 * DECODE_BLOCK
    calls.clear()
    sys.setprofile(count)
    try:
        decode_image(data, target_size=(224, 224))
    finally:
        sys.setprofile(None)
    assert 2 <= len(calls) <= -(-len(data) // DECODE_BLOCK) + 1


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"this is a text file, not an image\n", "not an image"),
        (encode(gradient(), "JPEG")[:300], "truncated"),
        (encode(gradient(), "PNG")[:-40], "truncated"),
    ],
    ids=["empty", "text", "truncated-jpeg", "truncated-png"],
)
def test_bad_bytes_raise_input_error(data: bytes, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        decode_image(data)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(InputError, match="megapixels"):
        decode_image(data, max_pixels=1_000_000)


def test_unsupported_format_is_refused() -> None:
    with pytest.raises(InputError, match="unsupported image format TIFF"):
        decode_image(encode(gradient(), "TIFF"))


def test_resize_modes_and_placement() -> None:
    img = gradient(200, 100)
    out, place = resize(img, 50, 50, "stretch")
    assert out.size == (50, 50) and place.box_to_image((0, 0, 1, 1)) == (0, 0, 1, 1)
    out, place = resize(img, 50, 50, "crop")
    assert out.size == (50, 50)
    # The centre half of the width is kept: model x 0..1 is image x 0.25..0.75.
    assert place.box_to_image((0.0, 0.0, 1.0, 1.0)) == pytest.approx((0.0, 0.25, 1.0, 0.75))
    out, place = resize(img, 50, 50, "letterbox")
    assert out.size == (50, 50)
    arr = np.asarray(out)
    assert arr[0].max() == 0 and arr[-1].max() == 0  # padded rows are black
    assert place.box_to_image((12 / 50, 0.0, 37 / 50, 1.0)) == pytest.approx((0.0, 0.0, 1.0, 1.0))


def test_unknown_resize_mode() -> None:
    with pytest.raises(InputError, match="resize mode"):
        resize(gradient(), 10, 10, "zoom")


def spec(
    dtype: str, quant: Quantization | None = None, norm: Normalization | None = None
) -> InputSpec:
    return InputSpec(4, 4, 3, dtype, quant or Quantization(), norm)


def test_contract_defaults_by_dtype() -> None:
    px = np.arange(256)
    assert np.array_equal(
        input_lookup_table(spec("uint8", Quantization(0.5, 3))), px.astype(np.uint8)
    )
    assert np.array_equal(
        input_lookup_table(spec("int8", Quantization(0.5, 3))), (px - 128).astype(np.int8)
    )
    assert np.allclose(input_lookup_table(spec("float32")), (px - 127.5) / 127.5)


def test_lookup_table_equals_the_contract_formula() -> None:
    quant, norm = Quantization(0.0078125, -1), Normalization(127.5, 127.5)
    table = input_lookup_table(spec("int8", quant, norm))
    px = np.arange(256, dtype=np.float64)
    expected = np.clip(np.round((px - 127.5) / 127.5 / 0.0078125 - 1), -128, 127)
    assert np.array_equal(table.astype(np.int64), expected.astype(np.int64))
    # Values beyond the dtype's range are clipped, not wrapped.
    wide = input_lookup_table(spec("uint8", Quantization(0.001, 0), Normalization(0, 1)))
    assert wide[255] == 255 and wide[0] == 0


def test_image_to_tensor_shape_dtype_and_bgr() -> None:
    img = Image.fromarray(np.full((4, 4, 3), (10, 20, 30), np.uint8))
    t = image_to_tensor(img, spec("uint8"))
    assert t.shape == (1, 4, 4, 3) and t.dtype == np.uint8 and tuple(t[0, 0, 0]) == (10, 20, 30)
    bgr = InputSpec(4, 4, 3, "uint8", color="BGR")
    assert tuple(image_to_tensor(img, bgr)[0, 0, 0]) == (30, 20, 10)


def test_preprocess_end_to_end_grayscale() -> None:
    data = encode(Image.new("L", (16, 16), 200), "PNG")
    tensor, _ = preprocess(
        data, InputSpec(8, 8, 1, "int8", Quantization(1 / 255, -128), Normalization(0, 255))
    )
    assert tensor.shape == (1, 8, 8, 1) and tensor.dtype == np.int8
    assert int(tensor[0, 0, 0, 0]) == 200 - 128
