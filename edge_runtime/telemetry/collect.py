"""Reads the system (psutil, /sys, vcgencmd) and builds the telemetry message of CONTRACTS."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from edge_runtime.telemetry.stats import Snapshot, decode_throttled, latency_summary, rate

log = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")


def utc_now() -> str:
    return utc_after(0.0)


def utc_after(seconds: float) -> str:
    """The UTC time ``seconds`` from now, ISO 8601 to the millisecond with a ``Z``."""
    when = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=seconds)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def temperature_c(thermal_file: Path = THERMAL_ZONE) -> float | None:
    """SoC temperature: psutil sensors, else /sys/class/thermal; None if unknown."""
    try:
        sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except (OSError, RuntimeError):
        sensors = {}
    for name in ("cpu_thermal", "cpu-thermal", "soc_thermal", "coretemp", "k10temp"):
        for entry in sensors.get(name, []):
            if entry.current is not None and -40 < entry.current < 150:
                return round(float(entry.current), 1)
    try:
        value = int(thermal_file.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None
    return round(value, 1) if -40 < value < 150 else None


def throttled(timeout: float = 2.0) -> dict[str, object] | None:
    """Raspberry Pi throttling flags from ``vcgencmd get_throttled``; None where absent."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "get_throttled"], capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return decode_throttled(done.stdout.decode("ascii", errors="replace"))


class Collector:
    """Builds one telemetry message per call; keeps what rates need between calls."""

    def __init__(
        self,
        *,
        state_dir: Path,
        tally: Callable[[], Snapshot],
        queue: Callable[[], dict[str, int]],
        model: dict[str, str | None],
        delegate: str,
    ) -> None:
        self.state_dir = state_dir
        self._tally = tally
        self._queue = queue
        self.model = model
        self.delegate = delegate
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)
        self._started = time.monotonic()
        self._last_time = self._started
        self._last_count = 0

    def collect(self) -> dict[str, Any]:
        now = time.monotonic()
        snap = self._tally()
        fps = rate(snap.count, self._last_count, now - self._last_time)
        self._last_time, self._last_count = now, snap.count
        try:
            disk_free = int(shutil.disk_usage(self.state_dir).free)
        except OSError:
            disk_free = None
        return {
            "ts": utc_now(),
            "uptime_s": round(now - self._started, 3),
            "cpu_percent": round(float(self._process.cpu_percent(None)), 1),
            "memory": {
                "rss_bytes": int(self._process.memory_info().rss),
                "system_percent": round(float(psutil.virtual_memory().percent), 1),
            },
            "temperature_c": temperature_c(),
            "throttled": throttled(),
            "disk_free_bytes": disk_free,
            "inference": {
                "count": snap.count,
                "errors": snap.errors,
                "fps": fps,
                "latency_ms": latency_summary(snap.latencies),
            },
            "queue": self._queue(),
            "model": dict(self.model),
            "delegate": self.delegate,
        }
