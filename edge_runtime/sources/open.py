"""Which reader serves a URL; a missing optional library is one clear line
(``SourceError``) for that source, never an ImportError out of the daemon."""

from __future__ import annotations

from typing import Callable

from edge_runtime.sources.frames import FrameReader, Size, SourceError

#: The size a camera whose stream size is not known in advance is asked for
#: (before scaling toward the model).
CAMERA_SIZE = (640, 480)

#: size(stream width, stream height) -> the size to decode at
Sizing = Callable[[int, int], Size]


def open_reader(url: str, sizing: Sizing, *, gray: bool, paced: bool = True) -> FrameReader:
    """Open ``url``; ``paced``: a file:// clip plays at its own frame rate, as a camera
    would (else as fast as it decodes).

    Raises:
        SourceError: the library it needs is missing, or it cannot be opened.
    """
    if url.startswith("picamera2:"):
        from edge_runtime.sources.picamera import PicameraReader

        return PicameraReader(url, sizing(*CAMERA_SIZE), gray=gray)
    try:
        from edge_runtime.sources.ffmpeg import FfmpegReader
    except ImportError as exc:
        raise SourceError(
            url,
            "PyAV is not installed, so FFmpeg cannot read this source: "
            "pip install 'edge-runtime[video]'",
        ) from exc
    return FfmpegReader(url, sizing, gray=gray, paced=paced)
