"""A decoded frame to the model's input: the decoding size asked of a source, and the
tensor, prepared as an image request is (resize mode, colour order, normalisation)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from edge_runtime.inference.preprocess import image_to_tensor, resize
from edge_runtime.inference.types import InputSpec
from edge_runtime.sources.frames import Size, wanted_size


def sizing(spec: Callable[[], InputSpec], floor: int = 0) -> Callable[[int, int], Size]:
    """size(stream width, stream height): what to decode at for the model ``spec()``
    serves when the stream starts; at least ``floor`` pixels on the long side."""

    def size(width: int, height: int) -> Size:
        s = spec()
        return wanted_size(width, height, Size(s.width, s.height), s.resize != "stretch", floor)

    return size


def frame_tensor(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """The ``(1, H, W, C)`` input tensor of a frame."""
    mode = "L" if spec.channels == 1 else "RGB"
    img = image if image.mode == mode else image.convert(mode)
    img, _ = resize(img, spec.width, spec.height, spec.resize)
    return image_to_tensor(img, spec)
