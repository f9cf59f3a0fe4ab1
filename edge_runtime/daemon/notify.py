"""systemd service notifications (sd_notify) without a dependency.

A datagram to the AF_UNIX socket named by ``NOTIFY_SOCKET`` (``@name`` means the
abstract namespace). Without that variable every call is a no-op, so the daemon runs
the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

from edge_runtime.daemon.liveness import LivenessFile

log = logging.getLogger(__name__)


def socket_address(value: str) -> str:
    """The address to send to: ``@name`` becomes the abstract name ``\\0name``."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``STATUS=...``, ``STOPPING=1``."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        watchdog_every: float = 1.0,
        liveness: LivenessFile | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        # refreshed with each watchdog ping, also outside systemd (``edge-runtime health``)
        self._liveness = liveness
        target = env.get("NOTIFY_SOCKET", "")
        self._address = socket_address(target) if target else None
        self._lock = threading.Lock()
        self._last_ping = 0.0
        usec = env.get("WATCHDOG_USEC", "")
        # ping at least twice per watchdog period, and not more often than needed
        self.watchdog_every = (
            min(watchdog_every, int(usec) / 2e6) if usec.isdigit() and int(usec) else watchdog_every
        )
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, message: str) -> bool:
        if self._sock is None or self._address is None:
            return False
        try:
            with self._lock:
                self._sock.sendto(message.encode("utf-8"), self._address)
            return True
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message, exc)
            return False

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the watchdog, rate-limited. Only the supervisor's round in ``app`` calls it,
        while every worker is alive and within its bound."""
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_every:
            self._last_ping = now
            self.send("WATCHDOG=1")
            if self._liveness is not None:
                self._liveness.touch()

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._liveness is not None:
            self._liveness.remove()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
