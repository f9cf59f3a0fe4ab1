"""Live streams served on 127.0.0.1 for the source tests: MJPEG over HTTP."""

from __future__ import annotations

import http.server
import io
import threading
import time

from PIL import Image


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class MjpegServer:
    """``http://127.0.0.1:PORT/stream``: the images, one after the other, as
    multipart/x-mixed-replace JPEG parts at ``fps``, for as long as a client reads
    (bytes in ``images`` are sent as they are: a corrupt part); ``sent`` counts the parts
    sent, ``clients`` the connections taken."""

    def __init__(self, images: list[Image.Image | bytes], fps: float) -> None:
        self._parts = [img if isinstance(img, bytes) else jpeg_bytes(img) for img in images]
        self._interval = 1.0 / fps
        self._stopping = threading.Event()
        self.sent = 0
        self.clients = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.clients += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i, due = 0, time.monotonic()
                try:
                    while not server._stopping.is_set():
                        part = server._parts[i % len(server._parts)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(part)}\r\n\r\n".encode()
                            + part
                            + b"\r\n"
                        )
                        server.sent += 1
                        i += 1
                        due += server._interval
                        time.sleep(max(0.0, due - time.monotonic()))
                except OSError:
                    return

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
