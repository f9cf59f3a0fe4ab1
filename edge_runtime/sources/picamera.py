"""``picamera2:N``: a Raspberry Pi camera module through picamera2 (shipped with
Raspberry Pi OS). The camera's ISP scales frames to the size asked for, so nothing is
converted at full resolution; the channel-order copy is made only for the frames taken.

A capture waits at most ``CAPTURE_WAIT`` seconds for a frame: a hung camera then ends the
attempt and is closed, so the next attempt can open it (a capture without a bound held
the device for good, and every reconnect found it busy). A camera whose set-up fails is
closed too."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

from PIL import Image

from edge_runtime.sources.frames import STALL_AFTER, Captured, Size, SourceError

log = logging.getLogger(__name__)

#: The frame rate asked of the camera when the source takes every frame.
CAMERA_FPS = 30.0
#: Longest wait for one frame (picamera2 raises TimeoutError after it): the source's
#: stall bound, so the camera is free again by the time a new attempt opens it.
CAPTURE_WAIT = STALL_AFTER


def _picamera2() -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise ImportError(
            "picamera2 is not installed (Raspberry Pi OS: apt install python3-picamera2, "
            "and a venv made with --system-site-packages)"
        ) from exc
    return Picamera2


def _image(pixels: Any, gray: bool) -> Image.Image:
    """libcamera's RGB888 frame (BGR in memory) as an RGB (or L) image."""
    img = Image.fromarray(pixels[:, :, 2::-1].copy(), "RGB")
    return img.convert("L") if gray else img


class PicameraReader:
    """Camera ``index`` streaming frames of ``size``."""

    def __init__(self, url: str, size: Size, *, gray: bool, camera: Any = None) -> None:
        """``camera``: a Picamera2-like object (tests); else picamera2's own."""
        self.url = url
        self._gray = gray
        self._closed = threading.Event()
        index = int(url.split(":", 1)[1])
        try:
            self._camera = camera if camera is not None else _picamera2()(index)
        except ImportError as exc:
            raise SourceError(url, str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - picamera2 raises many kinds; one line each
            raise SourceError(url, f"cannot open camera {index}: {exc}") from exc
        try:
            config = self._camera.create_video_configuration(
                main={"size": (size.width, size.height), "format": "RGB888"}
            )
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # noqa: BLE001 - as above; the opened camera is let go
            self._release(stop=False)
            raise SourceError(url, f"cannot open camera {index}: {exc}") from exc

    @property
    def detail(self) -> str:
        return "picamera2 (scaled in the camera's ISP)"

    def frames(self) -> Iterator[Captured]:
        try:
            while not self._closed.is_set():
                try:
                    pixels = self._camera.capture_array("main", wait=CAPTURE_WAIT)
                except TimeoutError as exc:
                    raise SourceError(
                        self.url, f"no frame from the camera in {CAPTURE_WAIT:g} s"
                    ) from exc
                except Exception as exc:  # noqa: BLE001
                    raise SourceError(self.url, f"capture failed: {exc}") from exc
                yield Captured(partial(_image, pixels, self._gray))
        finally:
            self._release(stop=True)

    def _release(self, *, stop: bool) -> None:
        """Stop (when started) and close the camera; a failure to stop still closes it."""
        try:
            if stop:
                self._camera.stop()
        finally:
            try:
                self._camera.close()
            except Exception as exc:  # noqa: BLE001 - closing is the last step; say why
                log.warning("%s: closing the camera failed: %s", self.url, exc)

    def close(self) -> None:
        self._closed.set()
