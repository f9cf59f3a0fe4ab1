"""Pure telemetry maths: percentiles, rates, throttling flags, and a thread-safe tally."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

#: ``vcgencmd get_throttled`` bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under_voltage",
    1: "freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
    16: "under_voltage_occurred",
    17: "freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in (50, 90, 99):
        p = percentile(values, q)
        out[f"p{q}"] = None if p is None else round(p, 3)
    return out


def rate(count_now: int, count_before: int, seconds: float) -> float:
    """Events per second between two counter readings (0 for no elapsed time)."""
    if seconds <= 0:
        return 0.0
    return round(max(0, count_now - count_before) / seconds, 3)


def decode_throttled(text: str) -> dict[str, object] | None:
    """Parse ``throttled=0x50005`` into named flags; None if it cannot be read."""
    value = text.strip().split("=", 1)[-1].strip()
    try:
        bits = int(value, 16)
    except ValueError:
        return None
    flags: dict[str, object] = {"raw": hex(bits)}
    for bit, name in THROTTLE_BITS.items():
        flags[name] = bool(bits >> bit & 1)
    return flags


@dataclass(frozen=True)
class Snapshot:
    count: int
    errors: int
    refused: int
    latencies: tuple[float, ...]
    by_code: tuple[tuple[str, int], ...] = ()  # errors per code, by code


class Tally:
    """Counters the inference loop updates and the telemetry loop reads."""

    def __init__(self, window: int) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=window)
        self.count = 0
        self.errors = 0
        self.refused = 0
        self._by_code: dict[str, int] = {}

    def resize(self, window: int) -> None:
        with self._lock:
            self._latencies = deque(self._latencies, maxlen=window)

    def inferred(self, latency_ms: float) -> None:
        with self._lock:
            self.count += 1
            self._latencies.append(latency_ms)

    def failed(self, code: str = "other") -> None:
        with self._lock:
            self.errors += 1
            self._by_code[code] = self._by_code.get(code, 0) + 1

    def refuse(self) -> None:
        with self._lock:
            self.refused += 1
            self.errors += 1
            self._by_code["queue_full"] = self._by_code.get("queue_full", 0) + 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self.count,
                self.errors,
                self.refused,
                tuple(self._latencies),
                tuple(sorted(self._by_code.items())),
            )
