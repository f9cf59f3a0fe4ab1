"""What a source publishes: every result, or (``publish = "changes"``) the first, each
change of what is seen, and the current one again every ``heartbeat`` seconds (pure)."""

from __future__ import annotations

from typing import Any

#: What a result "sees": the top-1 label, or the set of detected labels, at or above
#: ``min_score``.
Seen = tuple[str, ...]


def seen(result: dict[str, Any], min_score: float) -> Seen:
    """The labels a result counts as seen (sorted; empty when nothing reaches
    ``min_score``)."""
    if "detections" in result:
        return tuple(
            sorted(
                {
                    str(d.get("label") or d.get("index"))
                    for d in result["detections"]
                    if d.get("score", 0.0) >= min_score
                }
            )
        )
    top = result.get("top") or []
    if top and top[0].get("score", 0.0) >= min_score:
        return (str(top[0].get("label") or top[0].get("index")),)
    return ()


class ChangeFilter:
    """Decides, result by result, whether to publish, and whether it is a change."""

    def __init__(self, mode: str, min_score: float, heartbeat: float) -> None:
        self.mode = mode
        self.min_score = min_score
        self.heartbeat = heartbeat
        self._last: Seen | None = None
        self._published_at = 0.0

    def decide(self, result: dict[str, Any], now: float) -> tuple[bool, bool]:
        """(publish it, it is a change) for ``result`` at monotonic time ``now``."""
        current = seen(result, self.min_score)
        changed = current != self._last
        self._last = current
        due = changed or now - self._published_at >= self.heartbeat
        publish = self.mode == "every" or due
        if publish:
            self._published_at = now
        return publish, changed
