"""Image bytes to an input tensor: pure functions, shared by the device and the converter.

The converter calibrates and validates through these very functions, so a bundle's
``input`` spec reproduces on the device exactly what the host measured.

Normalisation follows the contract: ``value = (pixel - mean) / std`` on 0..255 pixels,
then for a quantized tensor ``q = round(value / scale + zero_point)`` clipped to the
dtype. With no mean/std given, uint8 takes raw pixels, int8 takes ``pixel - 128`` and
float takes mean 127.5, std 127.5. Because pixels are 0..255, the whole mapping is a
256-entry lookup table, which is exact and several times faster than the arithmetic;
with a mean or std per channel (``--mean 123.675,116.28,103.53``) it is one table per
channel.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from edge_runtime.errors import InputError
from edge_runtime.inference.types import InputSpec, Normalization, Quantization

#: Formats the decoder accepts; anything else is refused before decoding.
FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP", "GIF", "MPO"})

#: Default cap on decoded pixels (a 1920x1080 frame is 2.1 MP; a 24 MP camera photo passes).
DEFAULT_MAX_PIXELS = 40_000_000

_RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class Placement:
    """Where the model input sits on the original image, per axis:
    ``image_coord = scale * input_coord + offset`` with coordinates normalised to 0..1.

    Used to map detection boxes from model space back onto the image.
    """

    y_scale: float = 1.0
    y_offset: float = 0.0
    x_scale: float = 1.0
    x_offset: float = 0.0

    def box_to_image(
        self, box: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        ymin, xmin, ymax, xmax = box
        mapped = (
            self.y_scale * ymin + self.y_offset,
            self.x_scale * xmin + self.x_offset,
            self.y_scale * ymax + self.y_offset,
            self.x_scale * xmax + self.x_offset,
        )
        return tuple(min(1.0, max(0.0, v)) for v in mapped)  # type: ignore[return-value]


IDENTITY = Placement()
#: Most bytes of an image handed to its decoder at once: a camera's request in one call,
#: a 10 MB photo in ten, each read a copy of that much.
DECODE_BLOCK = 1 << 20


def decode_image(
    data: bytes,
    *,
    channels: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode image bytes to an RGB (``channels=3``) or grayscale (``channels=1``) image.

    EXIF orientation is applied. With ``target_size`` (width, height), a JPEG is decoded
    at the smallest power-of-two reduction that still covers that size (``Image.draft``),
    which makes large camera frames several times cheaper to decode.

    Raises:
        InputError: empty, unknown, corrupt or truncated data, an unsupported format,
            or more pixels than ``max_pixels`` (checked from the header, before decoding).
    """
    if not data:
        raise InputError("empty input: expected JPEG, PNG, BMP or WebP image bytes, got 0 bytes")
    if channels not in (1, 3):
        raise InputError(f"models with {channels} input channels are not images (expected 1 or 3)")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise InputError(
            f"not an image: {len(data)} bytes that Pillow cannot identify "
            f"(starts with {data[:8]!r}); send JPEG, PNG, BMP or WebP"
        ) from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"corrupt or truncated image (unreadable header): {exc}") from exc
    if img.format not in FORMATS:
        raise InputError(f"unsupported image format {img.format}; send JPEG, PNG, BMP or WebP")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.1f} megapixels"
        )
    mode = "L" if channels == 1 else "RGB"
    try:
        orientation = _orientation(img)
        if target_size is not None and img.format in ("JPEG", "MPO"):
            img.draft(mode, _draft_request(target_size, orientation))
        if isinstance(img, ImageFile.ImageFile):
            # The bytes are in memory: the decoder takes them in one call (pieces of
            # DECODE_BLOCK for larger ones), not in Pillow's 64 KiB reads, each of which
            # gives Python's GIL up and waits to take it back while other threads hold it
            img.decodermaxblock = max(img.decodermaxblock, min(len(data), DECODE_BLOCK))
        img.load()
        if orientation != 1:  # else exif_transpose would only copy the image
            img = ImageOps.exif_transpose(img)
        return _to_mode(img, mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"corrupt or truncated {img.format} image: {exc}") from exc


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8; 1 when absent or unreadable)."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not stop decoding  # noqa: BLE001
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _draft_request(target_size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """The draft size to request, in stored (pre-EXIF-rotation) orientation."""
    tw, th = target_size
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        return th, tw
    return tw, th


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    if img.mode == mode:
        return img
    if img.mode in ("P", "PA") and "transparency" in img.info or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: keep the top 8 bits rather than clipping at 255.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        img = Image.fromarray(arr.astype(np.uint8), "L")
    return img.convert(mode)


def resize(
    img: Image.Image, width: int, height: int, mode: str = "stretch"
) -> tuple[Image.Image, Placement]:
    """Resize to ``width`` x ``height``.

    ``stretch`` ignores the aspect ratio; ``crop`` scales to cover and cuts the centre;
    ``letterbox`` scales to fit and pads with black. Returns the image and where it sits
    on the original, for mapping detection boxes back.
    """
    src_w, src_h = img.size
    if mode == "stretch":
        if (src_w, src_h) == (width, height):
            return img, IDENTITY
        return img.resize((width, height), _RESAMPLE, reducing_gap=3.0), IDENTITY
    if mode == "crop":
        scale = max(width / src_w, height / src_h)
        crop_w, crop_h = width / scale, height / scale
        left, top = (src_w - crop_w) / 2, (src_h - crop_h) / 2
        box = (left, top, left + crop_w, top + crop_h)
        out = img.resize((width, height), _RESAMPLE, box=box, reducing_gap=3.0)
        return out, Placement(crop_h / src_h, top / src_h, crop_w / src_w, left / src_w)
    if mode == "letterbox":
        scale = min(width / src_w, height / src_h)
        new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        inner = img.resize((new_w, new_h), _RESAMPLE, reducing_gap=3.0)
        canvas = Image.new(img.mode, (width, height))
        left, top = (width - new_w) // 2, (height - new_h) // 2
        canvas.paste(inner, (left, top))
        return canvas, Placement(height / new_h, -top / new_h, width / new_w, -left / new_w)
    raise InputError(f"unknown resize mode {mode!r}; expected stretch, crop or letterbox")


def effective_normalization(spec: InputSpec) -> Normalization | None:
    """The mean/std in force: the spec's own, or the float default (127.5, 127.5).

    ``None`` for quantized inputs without one: those take raw pixels (uint8) or
    ``pixel - 128`` (int8) whatever the tensor's scale.
    """
    if spec.normalization is not None:
        return spec.normalization
    if spec.dtype in ("float32", "float16"):
        return Normalization(127.5, 127.5)
    return None


@lru_cache(maxsize=64)
def _lookup_table(
    dtype: str, quant: Quantization, norm: Normalization | None, channels: int
) -> np.ndarray:
    """``[256]``, or ``[256, channels]`` when the normalisation differs by channel."""
    pixels = np.arange(256, dtype=np.float64)
    if norm is None:
        if dtype == "uint8":
            return pixels.astype(np.uint8)
        if dtype == "int8":
            return (pixels - 128).astype(np.int8)
        raise InputError(f"no default normalisation for {dtype} input; give --mean and --std")
    try:
        means, stds = norm.values(channels)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if 0 in stds:
        raise InputError("std must not be 0")
    value: np.ndarray
    if norm.per_channel:
        value = (pixels[:, None] - np.array(means)) / np.array(stds)
    else:
        value = (pixels - means[0]) / stds[0]
    if dtype in ("float32", "float16"):
        return value.astype(dtype)
    if not quant.is_quantized:
        raise InputError(f"{dtype} input tensor has no quantization parameters")
    info = np.iinfo(np.dtype(dtype))
    q = np.round(value / quant.scale + quant.zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def input_lookup_table(spec: InputSpec) -> np.ndarray:
    """The 256-entry table that maps a 0..255 pixel to the input tensor's value
    (``[256, channels]``, a table per channel, when the normalisation differs by channel).

    Raises:
        InputError: no default normalisation for the dtype, a zero std, or per-channel
            values for another number of channels.
    """
    return _lookup_table(
        spec.dtype, spec.quantization, effective_normalization(spec), spec.channels
    )


def image_to_tensor(img: Image.Image, spec: InputSpec) -> np.ndarray:
    """An image already at the model's size to a ``(1, H, W, C)`` tensor of the model's dtype."""
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.color == "BGR":
        pixels = pixels[:, :, ::-1]
    expected = (spec.height, spec.width, spec.channels)
    if pixels.shape != expected:
        raise InputError(f"image array is {pixels.shape}, the model expects {expected}")
    table = input_lookup_table(spec)
    if table.ndim == 1:
        return np.take(table, pixels)[None, ...]
    out = np.empty((1, *expected), dtype=table.dtype)
    for channel in range(spec.channels):
        out[0, :, :, channel] = np.take(table[:, channel], pixels[:, :, channel])
    return out


def preprocess(
    data: bytes, spec: InputSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, Placement]:
    """Image bytes to the input tensor, plus the placement for mapping boxes back.

    Raises:
        InputError: for anything that is not a decodable image within the limits.
    """
    img = decode_image(
        data,
        channels=spec.channels,
        max_pixels=max_pixels,
        target_size=(spec.width, spec.height),
    )
    img, placement = resize(img, spec.width, spec.height, spec.resize)
    return image_to_tensor(img, spec), placement
