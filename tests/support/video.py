"""Video clips and streams for the source tests, made with PyAV (FFmpeg)."""

from __future__ import annotations

import importlib
import io
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from support.images import DIGITS


def digit_frames(labels: list[int], side: int = 64) -> list[tuple[Image.Image, int]]:
    """One held-out digit per wanted label (the first of each), scaled up to ``side``."""
    data = np.load(DIGITS)
    out = []
    for want in labels:
        i = int(np.flatnonzero(data["y"] == want)[0])
        img = Image.fromarray(np.asarray(data["x"][i], dtype=np.uint8), "L")
        out.append((img.resize((side, side), Image.Resampling.NEAREST).convert("RGB"), want))
    return out


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_clip(path: Path, images: list[Image.Image], *, hold: int, fps: int) -> Path:
    """An H.264 MP4 showing each image for ``hold`` frames at ``fps`` (lossless luma)."""
    av: Any = importlib.import_module("av")  # untyped

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height = images[0].size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        n = 0
        for img in images:
            for _ in range(hold):
                frame = av.VideoFrame.from_image(img)
                frame.pts = n
                n += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
