"""Live streams served on 127.0.0.1 for the source tests, over HTTP: MJPEG, and
MPEG-TS whose video freezes while its audio goes on."""

from __future__ import annotations

import http.server
import importlib
import io
import itertools
import threading
import time
from fractions import Fraction
from typing import Any, BinaryIO, TypeVar

import numpy as np
from PIL import Image


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class LiveServer:
    """``http://127.0.0.1:PORT/stream``: a live stream of ``content_type``, written by
    ``stream(wfile)`` (a subclass's) for as long as a client reads and the server runs;
    ``clients`` counts the connections taken, ``gone`` those the client closed."""

    content_type = "application/octet-stream"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self.clients = 0
        self.gone = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.clients += 1
                self.send_response(200)
                self.send_header("Content-Type", server.content_type)
                self.end_headers()
                try:
                    server.stream(self.wfile)
                except OSError:
                    server.gone += 1

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def stream(self, wfile: BinaryIO) -> None:
        raise NotImplementedError

    def __enter__(self: Server) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


Server = TypeVar("Server", bound=LiveServer)


class MjpegServer(LiveServer):
    """The images, one after the other, as multipart/x-mixed-replace JPEG parts at
    ``fps`` (bytes in ``images`` are sent as they are: a corrupt part); ``sent`` counts
    the parts sent."""

    content_type = "multipart/x-mixed-replace; boundary=frame"

    def __init__(self, images: list[Image.Image | bytes], fps: float) -> None:
        super().__init__()
        self._parts = [img if isinstance(img, bytes) else jpeg_bytes(img) for img in images]
        self._interval = 1.0 / fps
        self.sent = 0

    def stream(self, wfile: BinaryIO) -> None:
        i, due = 0, time.monotonic()
        while not self._stopping.is_set():
            part = self._parts[i % len(self._parts)]
            wfile.write(
                b"--frame\r\nContent-Type: image/jpeg\r\n"
                + f"Content-Length: {len(part)}\r\n\r\n".encode()
                + part
                + b"\r\n"
            )
            self.sent += 1
            i += 1
            due += self._interval
            time.sleep(max(0.0, due - time.monotonic()))


class FrozenVideoServer(LiveServer):
    """A camera whose video froze while its microphone goes on: live MPEG-TS, H.264
    video (a still image at 25 fps) for its first ``video_seconds``, then its audio
    (silence, MP2) alone, at real time."""

    content_type = "video/mp2t"
    RATE = 25
    SAMPLE_RATE = 16000
    SAMPLES = 1152  # an MP2 frame

    def __init__(self, video_seconds: float) -> None:
        super().__init__()
        self.video_seconds = video_seconds

    def stream(self, wfile: BinaryIO) -> None:
        av: Any = importlib.import_module("av")  # untyped
        try:
            self._mux(av, wfile)
        except av.FFmpegError as exc:  # a write inside FFmpeg failed: the client went
            raise ConnectionError("the client went away") from exc

    def _mux(self, av: Any, wfile: BinaryIO) -> None:
        # each packet written at once: the muxer's interleaving would hold the audio
        # back while it waits for video (up to 10 s)
        with av.open(wfile, "w", format="mpegts", options={"max_interleave_delta": "1"}) as out:
            video = out.add_stream(
                "libx264", rate=self.RATE, options={"preset": "ultrafast", "tune": "zerolatency"}
            )
            video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
            video.time_base = Fraction(1, self.RATE)
            audio = out.add_stream("mp2", rate=self.SAMPLE_RATE)
            audio.layout = "mono"
            still = Image.new("RGB", (64, 64), (200, 60, 20))
            silence = np.zeros((1, self.SAMPLES), dtype=np.int16)
            start, shown = time.monotonic(), 0
            for n in itertools.count():
                if self._stopping.is_set():
                    return
                at = n * self.SAMPLES / self.SAMPLE_RATE
                while at < self.video_seconds and shown / self.RATE <= at:
                    frame = av.VideoFrame.from_image(still)
                    frame.pts, shown = shown, shown + 1
                    out.mux(video.encode(frame))
                sound = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
                sound.sample_rate, sound.pts = self.SAMPLE_RATE, n * self.SAMPLES
                out.mux(audio.encode(sound))
                wfile.flush()
                time.sleep(max(0.0, start + at - time.monotonic()))
