"""A decoded frame to the model's input: the decoding size asked of a source, and the
prepared input, made as an image request's is (resize mode, colour order,
normalisation), with where it sits on the frame (detection boxes are mapped back onto
the whole frame) and what preparing it took (scaling in the decoder included)."""

from __future__ import annotations

import time
from typing import Callable

from edge_runtime.inference.engine import Prepared
from edge_runtime.inference.preprocess import image_to_tensor, resize
from edge_runtime.inference.types import InputSpec
from edge_runtime.sources.frames import Decoded, Size, wanted_size


def sizing(spec: Callable[[], InputSpec], floor: int = 0) -> Callable[[int, int], Size]:
    """size(stream width, stream height): what to decode at for the model ``spec()``
    serves when the stream starts; at least ``floor`` pixels on the long side."""

    def size(width: int, height: int) -> Size:
        s = spec()
        return wanted_size(width, height, Size(s.width, s.height), s.resize != "stretch", floor)

    return size


def prepare_frame(frame: Decoded, spec: InputSpec) -> Prepared:
    """The frame as the model's prepared input. The decoder scaled the frame keeping its
    aspect (``wanted_size``), so the placement found on the scaled frame, in fractions,
    holds on the stream's frame too."""
    start = time.perf_counter()
    mode = "L" if spec.channels == 1 else "RGB"
    image = frame.image if frame.image.mode == mode else frame.image.convert(mode)
    image, placement = resize(image, spec.width, spec.height, spec.resize)
    tensor = image_to_tensor(image, spec)
    spent = frame.scale_ms + (time.perf_counter() - start) * 1000
    return Prepared(tensor, placement, spec, spent)
