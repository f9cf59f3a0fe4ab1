"""Reconnect delays: exponential backoff with jitter (pure)."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, *, minimum: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): ``minimum * 2**attempt`` capped
    at ``maximum``, then scaled by a random factor in [0.5, 1.0) so a fleet that lost the
    same broker does not come back in lockstep."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    base = min(maximum, minimum * (2.0 ** min(attempt, 32)))
    return base * (0.5 + 0.5 * (rng or random).random())
