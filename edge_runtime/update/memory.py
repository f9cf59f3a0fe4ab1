"""What the update service remembers of the notices it answered, so that each notice gets
exactly one outcome event and a retained notice that comes back does not start over.

Two keys, because a notice is not its bundle: anyone who may publish a notice can pair a
genuine bundle's sha256 with a bad ``url`` or manifest.

- A **notice** is keyed by the sha256 of its bytes. The same notice again (a retained
  notice after a reconnect or restart) is not handled again once it was answered; a
  different notice for the same bundle still is.
- A **bundle** is keyed by its sha256, but only for refusals decided on the bundle's own
  bytes after its sha256 matched: signature, expired, rollback, incompatible, validation,
  health and crash_loop (``FINAL_REASONS``), and a bundle rolled back. Another notice for
  such a bundle is answered from memory, without fetching it.

Only final refusals are kept across restarts (``refused-updates.json`` in the state
folder, replaced atomically, the newest ``limit`` of each kind). Other outcomes are
remembered by the running process only: after a restart a notice refused for a reason
that may change (a bad URL, a download cut short) is handled once more.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge_runtime.bundle.atomic import atomic_writer

log = logging.getLogger(__name__)

#: Refusals that the same bundle (or the same notice) would meet again, whoever sends it.
FINAL_REASONS = frozenset(
    {
        "signature",
        "expired",
        "rollback",
        "incompatible",
        "validation",
        "health",
        "crash_loop",
        "rolled_back",
    }
)
#: Notices answered by this process that are remembered (the oldest go first).
SESSION_LIMIT = 256


class RefusedBundles:
    """Final refusals by bundle sha256 and by notice key, kept across restarts."""

    def __init__(self, path: Path, limit: int = 64) -> None:
        self.path = path
        self.limit = limit
        self._bundles: dict[str, str] = {}
        self._notices: dict[str, str] = {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(doc, list):  # the earlier form: a list of refused bundles
            doc = {"bundles": {s: "refused" for s in doc if isinstance(s, str)}}
        if isinstance(doc, dict):
            for name, into in (("bundles", self._bundles), ("notices", self._notices)):
                entries = doc.get(name)
                if isinstance(entries, dict):
                    into.update(
                        (k, v)
                        for k, v in entries.items()
                        if isinstance(k, str) and isinstance(v, str)
                    )

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self._bundles

    def reason(self, sha256: str) -> str | None:
        """Why the bundle was refused, or None when it was not."""
        return self._bundles.get(sha256)

    def has_notice(self, key: str) -> bool:
        return key in self._notices

    def add(self, sha256: str, reason: str = "rolled_back") -> None:
        self._remember(self._bundles, sha256, reason)

    def add_notice(self, key: str, reason: str) -> None:
        self._remember(self._notices, key, reason)

    def _remember(self, into: dict[str, str], key: str, reason: str) -> None:
        if into.get(key) == reason:
            return
        into.pop(key, None)
        into[key] = reason
        while len(into) > self.limit:
            del into[next(iter(into))]
        try:
            with atomic_writer(self.path, mode=0o600) as handle:
                doc = {"bundles": self._bundles, "notices": self._notices}
                handle.write(json.dumps(doc).encode())
        except OSError as exc:
            log.warning("cannot record the refusal in %s: %s", self.path, exc)


class SessionMemory:
    """Notices this process answered (by key), bounded."""

    def __init__(self, limit: int = SESSION_LIMIT) -> None:
        self.limit = limit
        self._keys: dict[str, None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys.pop(key, None)
        self._keys[key] = None
        while len(self._keys) > self.limit:
            del self._keys[next(iter(self._keys))]

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)
