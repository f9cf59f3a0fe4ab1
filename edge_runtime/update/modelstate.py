"""``model/state`` kept in the state folder, so that a restarted daemon publishes what it
published before: the active and previous versions and the last update with its result,
reason, time, next try and health.

``model-state.json`` (written atomically, 0600) holds the published document and, beside
it, where the active and previous versions came from (their bundle's sha256 and the key
of the notice that brought them), so that a version rolled back after a restart is still
known as rolled back. The ``active`` it names must be the model the daemon runs now;
otherwise (the config names another model) only ``last_update`` is taken over.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.bundle.atomic import atomic_writer

log = logging.getLogger(__name__)

STATE_FILE = "model-state.json"
MAX_STATE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Source:
    """Where an installed version came from."""

    sha256: str  # of its bundle
    notice: str  # the key of the notice that announced it (see ``memory``)

    def to_json(self) -> dict[str, str]:
        return {"sha256": self.sha256, "notice": self.notice}


def source_from(doc: object) -> Source | None:
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("sha256"), str)
        and isinstance(doc.get("notice"), str)
    ):
        return Source(doc["sha256"], doc["notice"])
    return None


@dataclass(frozen=True)
class SavedState:
    published: dict[str, Any]  # what ``model/state`` carried: active, previous, last_update
    sources: dict[str, Any]  # "active" / "previous" -> Source.to_json()


def load_model_state(state_dir: Path) -> SavedState | None:
    """The saved state, or None (none yet, or unreadable: then it starts empty)."""
    path = Path(state_dir) / STATE_FILE
    try:
        with open(path, "rb") as handle:
            doc = json.loads(handle.read(MAX_STATE_BYTES + 1))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring an unreadable %s: %s", path, exc)
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("published"), dict):
        log.warning("ignoring %s: not a saved model state", path)
        return None
    sources = doc.get("sources")
    return SavedState(doc["published"], sources if isinstance(sources, dict) else {})


def save_model_state(state_dir: Path, state: SavedState) -> None:
    """Replace the saved state atomically; a failure is logged (the state is still
    published), not raised: the update that changed it has happened."""
    path = Path(state_dir) / STATE_FILE
    try:
        with atomic_writer(path, mode=0o600) as handle:
            doc = {"published": state.published, "sources": state.sources}
            handle.write(json.dumps(doc, sort_keys=True).encode())
    except OSError as exc:
        log.warning("cannot save the model state in %s: %s", path, exc)
