"""Test images from the held-out digits (8x8 grayscale), as PNG or JPEG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

DIGITS = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "digits_test.npz"


def digits(n: int, fmt: str = "PNG") -> list[tuple[bytes, int]]:
    """The first ``n`` held-out digits as (encoded image, true label)."""
    data = np.load(DIGITS)
    out = []
    for x, y in zip(data["x"][:n], data["y"][:n]):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(x, dtype=np.uint8), mode="L").save(buf, format=fmt)
        out.append((buf.getvalue(), int(y)))
    return out


def jpeg(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, format="JPEG")
    return buf.getvalue()
