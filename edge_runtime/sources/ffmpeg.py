"""Sources FFmpeg reads, through PyAV (the optional extra ``video``): rtsp://, rtsps://,
http(s):// (MJPEG or any stream FFmpeg reads), file:// clips and v4l2:///dev/videoN.

Frames are scaled in the decoder (swscale, in the same call that converts them to RGB)
to the size the model wants (worked out again when the stream's frame size changes),
rather than converted at full resolution and resized, and
only the frames that will be used: a frame is handed over as decoded (``Captured``)
and scaled when the source takes it (every H.264 frame must be decoded, but a 30 fps
stream at ``fps = 5`` scales 5 frames a second, not 30);
decoding is in hardware where the device has a decoder for the stream's codec that
works (the Pi 4's ``h264_v4l2m2m``), else threaded software (``decoder.py``), which
skips a packet it refuses as corrupt (``CORRUPT_RUN`` in a row end the stream). A
network read that waits longer than ``STALL_AFTER`` gives up (FFmpeg's interrupt
callback), so a stalled camera ends in a ``SourceError`` instead of a thread stuck for
good. A file plays at its own frame rate, as a camera would."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any, Callable

import av
from PIL import Image

from edge_runtime.sources.decoder import Decoder
from edge_runtime.sources.frames import STALL_AFTER, Captured, Size, SourceError
from edge_runtime.sources.redact import without_password

log = logging.getLogger(__name__)

#: Packets in a row the software decoder may refuse as corrupt (each skipped) before
#: the stream counts as failed.
CORRUPT_RUN = 25

#: size(stream width, stream height) -> the size to decode at
Sizing = Callable[[int, int], Size]
#: scale(decoded frame, size, pixel format "rgb24" or "gray") -> the image
Scale = Callable[[Any, Size, str], Image.Image]


def scaled(frame: Any, size: Size, fmt: str) -> Image.Image:
    """A decoded frame scaled and converted by swscale in one call, as a Pillow image."""
    out = frame.reformat(size.width, size.height, fmt)
    image: Image.Image = Image.fromarray(out.to_ndarray(), "L") if fmt == "gray" else out.to_image()
    return image


def _target(url: str) -> tuple[str, str | None, dict[str, str]]:
    """What to hand ``av.open``: the file or URL, the input format, the options."""
    if url.startswith("file://"):
        return url[len("file://") :], None, {}
    if url.startswith("v4l2://"):
        if "video4linux2" not in av.formats_available and "v4l2" not in av.formats_available:
            raise SourceError(
                url,
                "this PyAV build has no video4linux2 input (PyPI's wheels lack it); "
                "install PyAV built against the system's FFmpeg (apt install python3-av)",
            )
        return url[len("v4l2://") :], "video4linux2", {}
    if url.startswith(("rtsp://", "rtsps://")):
        return url, None, {"rtsp_transport": "tcp"}
    return url, None, {}


class FfmpegReader:
    """One opened stream; ``frames`` decodes it, ``close`` stops it (any thread)."""

    def __init__(
        self,
        url: str,
        sizing: Sizing,
        *,
        gray: bool,
        paced: bool = True,
        decoder: Callable[[str, Any], Decoder] = Decoder,
        scale: Scale = scaled,
    ) -> None:
        """``paced``: a file plays at its own frame rate (else as fast as it decodes);
        ``decoder(url, stream)``: the stream's decoder (hardware where it works);
        ``scale``: what converts a taken frame (``scaled``)."""
        self.url = url
        self._sizing = sizing
        self._scale = scale
        self._format = "gray" if gray else "rgb24"
        self._closed = threading.Event()
        self._corrupt = 0  # packets refused as corrupt in a row
        self._corrupt_seen = False  # one was (logged once a connection)
        self._paced = paced and url.startswith("file://")
        where, fmt, options = _target(url)
        try:
            self._container: Any = av.open(
                where, format=fmt, options=options, timeout=(STALL_AFTER, STALL_AFTER)
            )
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(url, f"cannot open: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(url, "no video stream in it")
        self._stream = self._container.streams.video[0]
        try:
            self._decoder = decoder(url, self._stream)
        except BaseException:
            self._container.close()  # a reconnecting source must not pile up connections
            raise

    @property
    def detail(self) -> str:
        """The decoder in use, e.g. ``h264_v4l2m2m (hardware)``."""
        return self._decoder.detail

    def frames(self) -> Iterator[Captured]:
        container = self._container
        shape = (0, 0)  # the stream's frame size, which may change mid-way
        size = Size(0, 0)  # what its frames are scaled to
        start: float | None = None
        first_pts = 0.0
        try:
            # every stream's packets, so that a close is seen at the next one even while
            # only the others flow (a camera's frozen video, its audio going on)
            for packet in container.demux():
                if self._closed.is_set():
                    return
                if packet.stream_index != self._stream.index:
                    continue
                for frame in self._decode(packet):
                    if shape != (frame.width, frame.height):  # the first, or a new size
                        shape = (frame.width, frame.height)
                        size = self._sizing(*shape)
                    if self._paced and frame.pts is not None and frame.time_base is not None:
                        at = float(frame.pts * frame.time_base)
                        if start is None:
                            start, first_pts = time.monotonic(), at
                        if self._closed.wait(max(0.0, start + (at - first_pts) - time.monotonic())):
                            return
                    yield Captured(partial(self._scale, frame, size, self._format))
        except (av.FFmpegError, OSError) as exc:
            if not self._closed.is_set():
                raise SourceError(self.url, f"stream failed: {exc}") from exc
        finally:
            container.close()

    def _decode(self, packet: Any) -> list[Any]:
        """The frames ``packet`` completes; none for a packet the software decoder
        refuses as corrupt (a camera's glitch: the stream goes on), unless more than
        ``CORRUPT_RUN`` in a row were.

        Raises:
            av.FFmpegError: the decoder failed (see ``Decoder.decode``).
        """
        try:
            frames = list(self._decoder.decode(packet))
        except av.InvalidDataError as exc:
            self._corrupt += 1
            if self._decoder.hardware or self._corrupt > CORRUPT_RUN:
                raise
            log.log(
                logging.DEBUG if self._corrupt_seen else logging.WARNING,
                "%s: a corrupt frame skipped (%s)",
                without_password(self.url),
                exc,
            )
            self._corrupt_seen = True
            return []
        self._corrupt = 0
        return frames

    def close(self) -> None:
        self._closed.set()
