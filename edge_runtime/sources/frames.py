"""What every kind of frame source gives: decoded frames, scaled toward the model's
input only when taken (``Captured.decoded``), behind one small interface."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Protocol

from PIL import Image

from edge_runtime.errors import EdgeError

#: Seconds without a frame after which a source counts as lost (and a network read
#: gives up).
STALL_AFTER = 10.0


class SourceError(EdgeError):
    """A source cannot be read (now): unreachable, unplugged, a missing library.
    ``url`` is the source's; the message is one line meant for the state's detail."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(detail)
        self.url = url
        self.detail = detail


@dataclass(frozen=True)
class Size:
    """The size frames are wanted at (the decoder scales to it where it can)."""

    width: int
    height: int


@dataclass(frozen=True)
class Decoded:
    """A frame taken for the model (``Captured.decoded``): the RGB (or L) image, scaled
    toward the model's input, and the milliseconds spent scaling and converting it once
    decoded (part of the frame's preprocessing)."""

    image: Image.Image
    scale_ms: float = 0.0


@dataclass(frozen=True)
class Captured:
    """A frame as a source hands it over, decoded but not yet scaled nor converted:
    ``convert()`` makes the RGB (or L) image at the model's size. Only the frames that
    will be used are converted (``decoded``); the others (sampled out by ``fps``,
    replaced by a newer one before the model took them) cost their decoding alone. It
    may hold a decoder's buffer until it is dropped, so a source holds one or two."""

    convert: Callable[[], Image.Image]

    def decoded(self) -> Decoded:
        """The frame converted, with the milliseconds that took."""
        start = time.perf_counter()
        image = self.convert()
        return Decoded(image, (time.perf_counter() - start) * 1000)


class FrameReader(Protocol):
    """One open source. ``frames`` yields captured frames until the stream ends (a
    clip's end, a camera's stream closed) and raises ``SourceError`` on a failure;
    ``close`` may be called from another thread to make it stop; ``detail`` says what
    decodes it (for the source's state and telemetry), "" when there is nothing to say."""

    @property
    def detail(self) -> str: ...

    def frames(self) -> Iterator[Captured]: ...

    def close(self) -> None: ...


def wanted_size(width: int, height: int, model: Size, keep_aspect: bool, floor: int = 0) -> Size:
    """The size to decode a ``width`` x ``height`` stream at: the model's input size
    (``keep_aspect`` False: stretched), or the stream scaled to cover it with its aspect
    kept; never larger than the stream, and at least ``floor`` pixels on its long side
    when the stream has them (snapshots)."""
    if width <= 0 or height <= 0:
        return model
    if keep_aspect or floor:
        scale = max(model.width / width, model.height / height, floor / max(width, height))
        scale = min(1.0, scale)
        return Size(max(2, round(width * scale)) // 2 * 2, max(2, round(height * scale)) // 2 * 2)
    return model
