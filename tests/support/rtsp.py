"""A small RTSP server on 127.0.0.1 for the source tests: FFmpeg pushes a stream to it
(ANNOUNCE, SETUP, RECORD, RTP interleaved over TCP) and it relays the RTP packets to
the players (DESCRIBE, SETUP, PLAY, also interleaved over TCP). Only what FFmpeg's RTSP
muxer and demuxer send is understood; enough for tests, nothing more."""

from __future__ import annotations

import contextlib
import importlib
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any


class RtspRelay:
    def __init__(self, port: int = 0) -> None:
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self._sdp: bytes | None = None
        self._players: list[socket.socket] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection (a server going away)."""
        self._stopping.set()
        self._listener.close()
        with self._lock:
            conns, self._conns, self._players = self._conns, [], []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                buf = self._handle(conn, buf)
        except OSError:
            return

    def _handle(self, conn: socket.socket, buf: bytes) -> bytes:
        while buf:
            if buf[:1] == b"$":  # interleaved RTP/RTCP: from the pusher, relay it
                if len(buf) < 4:
                    return buf
                size = int.from_bytes(buf[2:4], "big")
                if len(buf) < 4 + size:
                    return buf
                packet, buf = buf[: 4 + size], buf[4 + size :]
                if packet[1] in (0, 1) and conn not in self._players:
                    self._relay(packet)
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return buf
            head = buf[:end].decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])
            }
            length = int(headers.get("content-length", "0"))
            if len(buf) < end + 4 + length:
                return buf
            body, buf = buf[end + 4 : end + 4 + length], buf[end + 4 + length :]
            self._request(conn, head[0].split(" ")[0], headers, body)
        return buf

    def _request(
        self, conn: socket.socket, method: str, headers: dict[str, str], body: bytes
    ) -> None:
        cseq = headers.get("cseq", "0")
        extra = ""
        payload = b""
        status = "200 OK"
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN\r\n"
        elif method == "ANNOUNCE":
            self._sdp = body
        elif method == "DESCRIBE":
            if self._sdp is None:
                status = "404 Not Found"
            else:
                payload = self._sdp
                extra = f"Content-Type: application/sdp\r\nContent-Base: {self.url}/\r\n"
        elif method == "SETUP":
            extra = f"Transport: {headers.get('transport', '')}\r\nSession: 12345678\r\n"
        elif method == "PLAY":
            extra = "Session: 12345678\r\n"
            with self._lock:
                self._players.append(conn)
        elif method in ("RECORD", "GET_PARAMETER", "SET_PARAMETER"):
            extra = "Session: 12345678\r\n"
        elif method == "TEARDOWN":
            with self._lock:
                if conn in self._players:
                    self._players.remove(conn)
        if payload:
            extra += f"Content-Length: {len(payload)}\r\n"
        conn.sendall(f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n{extra}\r\n".encode() + payload)

    def _relay(self, packet: bytes) -> None:
        with self._lock:
            players = list(self._players)
        for p in players:
            try:
                p.sendall(packet)
            except OSError:
                with self._lock:
                    if p in self._players:
                        self._players.remove(p)


class Pusher:
    """FFmpeg (PyAV) pushing an H.264 stream of the digits ``labels`` (one a second) to
    ``url`` over RTSP, in a process of its own (PyAV holds the GIL while it connects, and
    the relay answering it runs on Python threads), until stopped or the server goes."""

    def __init__(self, url: str, labels: list[int], fps: int = 15) -> None:
        tests = str(Path(__file__).resolve().parents[1])
        code = (
            f"import sys; sys.path.insert(0, {tests!r}); from support.rtsp import push; "
            f"push({url!r}, {labels!r}, {fps})"
        )
        self._proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait(5)


def push(url: str, labels: list[int], fps: int) -> None:
    av: Any = importlib.import_module("av")  # untyped

    from support.video import digit_frames

    images = [img for img, _ in digit_frames(labels)]
    out = av.open(url, "w", format="rtsp", options={"rtsp_transport": "tcp"})
    stream = out.add_stream(
        "libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency", "g": "5"}
    )
    stream.width, stream.height = images[0].size
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    n, due = 0, time.monotonic()
    while True:
        frame = av.VideoFrame.from_image(images[(n // fps) % len(images)])
        frame.pts = n
        n += 1
        for packet in stream.encode(frame):
            out.mux(packet)
        due += 1 / fps
        time.sleep(max(0.0, due - time.monotonic()))
