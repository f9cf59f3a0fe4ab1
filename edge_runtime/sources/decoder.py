"""Which decoder a stream gets: the hardware decoder FFmpeg has for its codec where it
works (the Pi 4's ``h264_v4l2m2m``, a V4L2 memory-to-memory device), else FFmpeg's
threaded software decoder. A hardware decoder that is missing, does not open (no
device node, a busy one) or fails on the stream's first packet costs one log line, and
the stream is decoded in software from that packet on."""

from __future__ import annotations

import glob
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import av

from edge_runtime.sources.redact import without_password

log = logging.getLogger(__name__)

#: The hardware decoder tried first for a codec (FFmpeg's decoder names).
HARDWARE: Mapping[str, str] = {"h264": "h264_v4l2m2m"}

#: create(decoder name) -> an unopened decoding context (PyAV's by default)
Create = Callable[[str], Any]


def _create(name: str) -> Any:
    return av.CodecContext.create(name, "r")


def has_video_devices() -> bool:
    """True when the machine has a V4L2 device node (a Pi's decoder is /dev/video10)."""
    return bool(glob.glob("/dev/video*"))


class _Seen:
    """Pairs of names seen before, shared by every source's thread."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def first(self, a: str, b: str) -> bool:
        """True the first time (``a``, ``b``) is given."""
        with self._lock:
            new = (a, b) not in self._seen
            self._seen.add((a, b))
            return new

    def __contains__(self, pair: tuple[str, str]) -> bool:
        with self._lock:
            return pair in self._seen


#: (decoder, reason) pairs already logged at WARNING: a source that reconnects or loops
#: tries its hardware decoder again each time, but says why it fell back once.
_WARNED = _Seen()
#: (stream, decoder) pairs whose hardware decoder failed after decoding: the stream's
#: next connections decode in software rather than fail the same way again and again.
_FAILED = _Seen()


class Decoder:
    """Decodes the packets of one video ``stream`` (``decode``), in hardware when
    ``hardware`` names a decoder for its codec that opens and decodes the first packet.
    ``detail`` says which decoder is in use, for the source's state and telemetry."""

    def __init__(
        self,
        url: str,
        stream: Any,
        *,
        hardware: Mapping[str, str] = HARDWARE,
        create: Create = _create,
    ) -> None:
        self._where = without_password(url)
        self._stream = stream
        self._context: Any = None
        self._hardware = False
        self._fell_back = ""
        self._proven = False  # a packet went through the hardware decoder
        name = self._asked = hardware.get(stream.codec_context.name, "")
        if name and (self._where, name) in _FAILED:
            self._fell_back = f"; {name} failed on this stream before"
        elif name:
            self._context = self._open_hardware(name, create)
            self._hardware = self._context is not None
        if self._context is None:
            self._software()

    @property
    def name(self) -> str:
        """The decoder's FFmpeg name."""
        return str(self._context.codec.name)

    @property
    def hardware(self) -> bool:
        return self._hardware

    @property
    def detail(self) -> str:
        if self._hardware:
            return f"{self.name} (hardware)"
        return f"{self.name} (software, threaded){self._fell_back}"

    def decode(self, packet: Any) -> Iterator[Any]:
        """The frames ``packet`` completes (a flush packet at the end gives the rest).

        Raises:
            av.FFmpegError: the software decoder (or a hardware one that already
                decoded) failed.
        """
        if self._hardware and not self._proven:
            try:
                frames = list(self._context.decode(packet))
            except av.FFmpegError as exc:
                self._fall_back(self._asked, f"it failed on the first packet: {exc}")
                self._software()
            else:
                self._proven = True
                yield from frames
                return
        try:
            yield from self._context.decode(packet)
        except av.FFmpegError as exc:
            if self._hardware and _FAILED.first(self._where, self._asked):
                log.warning(
                    "%s: hardware decoder %s failed (%s); the stream is decoded in "
                    "software from its next connection",
                    self._where,
                    self._asked,
                    exc,
                )
            raise

    def _open_hardware(self, name: str, create: Create) -> Any:
        source = self._stream.codec_context
        try:
            context = create(name)
            context.extradata = source.extradata
            context.width, context.height = source.width, source.height
            context.open()
        except (av.FFmpegError, ValueError, OSError) as exc:  # UnknownCodecError is one
            self._fall_back(name, str(exc))
            return None
        return context

    def _fall_back(self, name: str, reason: str) -> None:
        self._hardware = False
        self._fell_back = f"; {name} not usable"
        if not _WARNED.first(name, reason):
            level = logging.DEBUG
        elif has_video_devices():
            level = logging.WARNING  # the machine has V4L2 devices, but this one failed
        else:
            level = logging.INFO  # a host without any (a PC, a container): expected
        log.log(
            level,
            "%s: hardware decoder %s not usable (%s); decoding in software",
            self._where,
            name,
            reason,
        )

    def _software(self) -> None:
        context = self._stream.codec_context
        context.thread_type = "AUTO"
        self._context = context
