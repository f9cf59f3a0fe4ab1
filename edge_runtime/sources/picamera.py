"""``picamera2:N``: a Raspberry Pi camera module through picamera2 (shipped with
Raspberry Pi OS). The camera's ISP scales frames to the size asked for, so nothing is
converted at full resolution; the channel-order copy is made only for the frames taken."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

from PIL import Image

from edge_runtime.sources.frames import Captured, Size, SourceError

#: The frame rate asked of the camera when the source takes every frame.
CAMERA_FPS = 30.0


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
            config = self._camera.create_video_configuration(
                main={"size": (size.width, size.height), "format": "RGB888"}
            )
            self._camera.configure(config)
            self._camera.start()
        except ImportError as exc:
            raise SourceError(url, str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - picamera2 raises many kinds; one line each
            raise SourceError(url, f"cannot open camera {index}: {exc}") from exc

    @property
    def detail(self) -> str:
        return "picamera2 (scaled in the camera's ISP)"

    def frames(self) -> Iterator[Captured]:
        try:
            while not self._closed.is_set():
                try:
                    pixels = self._camera.capture_array("main")
                except Exception as exc:  # noqa: BLE001
                    raise SourceError(self.url, f"capture failed: {exc}") from exc
                yield Captured(partial(_image, pixels, self._gray))
        finally:
            self._camera.stop()
            self._camera.close()

    def close(self) -> None:
        self._closed.set()
