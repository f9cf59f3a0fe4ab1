"""One attempt at reading a source: a thread that opens it and decodes frames until the
stream ends, fails, or the source abandons it (a stalled decoder is left behind and
replaced, since a thread cannot be killed; FFmpeg's read timeout ends most of them)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from edge_runtime.sources.frames import Captured, FrameReader, SourceError

log = logging.getLogger(__name__)

#: open() -> a reader, or SourceError
Opener = Callable[[], FrameReader]


class Capture:
    """Runs ``opener`` then the reader's frames on its own thread, handing each frame to
    ``on_frame`` and how it ended to ``on_end(detail)`` ("" for the stream's end)."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        on_frame: Callable[[Captured], None],
        on_end: Callable[[str], None],
    ) -> None:
        self._name = name
        self._opener = opener
        self._on_frame = on_frame
        self._on_end = on_end
        self._abandoned = threading.Event()
        self._reader: FrameReader | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def detail(self) -> str:
        """The reader's ``detail`` (its decoder); "" before it is open."""
        with self._lock:
            reader = self._reader
        return "" if reader is None else reader.detail

    def abandon(self) -> None:
        """Stop handing frames on, and ask the reader to stop (any thread)."""
        self._abandoned.set()
        with self._lock:
            reader = self._reader
        if reader is not None:
            reader.close()

    def _run(self) -> None:
        detail = ""
        try:
            reader = self._opener()
            with self._lock:
                self._reader = reader
            if self._abandoned.is_set():
                reader.close()
            for frame in reader.frames():
                if self._abandoned.is_set():
                    break
                self._on_frame(frame)
        except SourceError as exc:
            detail = exc.detail
        except Exception as exc:  # noqa: BLE001 - a source's failure must not end the daemon
            log.exception("source %s: capture failed", self._name)
            detail = f"{type(exc).__name__}: {exc}"
        if not self._abandoned.is_set():
            self._on_end(detail)
