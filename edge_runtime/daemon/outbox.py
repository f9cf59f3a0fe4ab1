"""The on-disk outbox: every message the device sends goes here first (SQLite, WAL).

Rows are published in insertion order and deleted only once the broker acknowledged
them (PUBACK for QoS 1), so nothing is lost while the broker is away or across a
restart. The store is bounded by ``max_bytes``: when over the cap, the oldest telemetry
is dropped first; answers (predictions, errors) are never dropped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import ConfigError

log = logging.getLogger(__name__)

ANSWER = "answer"
TELEMETRY = "telemetry"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    correlation BLOB,
    size INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    correlation: bytes | None


class Outbox:
    """Thread-safe persistent FIFO of outgoing messages."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.dropped_telemetry = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the outbox {path}: {exc}; check state_dir") from exc
        self._size = int(row[0])
        self._count = int(row[1])

    def add(
        self,
        kind: str,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        correlation: bytes | None = None,
    ) -> int | None:
        """Store a message; returns its sequence number, or None for telemetry that
        does not fit even after dropping older telemetry."""
        size = len(payload) + len(topic) + 64
        with self._lock:
            if self._size + size > self.max_bytes:
                self._drop_telemetry(self._size + size - self.max_bytes)
            if self._size + size > self.max_bytes:
                if kind == TELEMETRY:
                    self.dropped_telemetry += 1
                    return None
                log.warning(
                    "outbox over its cap (%d bytes); keeping the answer anyway", self.max_bytes
                )
            cur = self._db.execute(
                "INSERT INTO outbox (kind, topic, payload, qos, correlation, size) "
                "VALUES (?,?,?,?,?,?)",
                (kind, topic, payload, qos, correlation, size),
            )
            self._size += size
            self._count += 1
            self._changed.notify_all()
            return int(cur.lastrowid or 0)

    def _drop_telemetry(self, need: int) -> None:
        rows = self._db.execute(
            "SELECT seq, size FROM outbox WHERE kind = ? ORDER BY seq", (TELEMETRY,)
        ).fetchall()
        freed, gone = 0, []
        for seq, size in rows:
            if freed >= need:
                break
            gone.append((seq,))
            freed += size
        if gone:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", gone)
            self._size -= freed
            self._count -= len(gone)
            self.dropped_telemetry += len(gone)
            log.warning("outbox full: dropped %d oldest telemetry messages", len(gone))

    def after(self, seq: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries with a sequence number above ``seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, topic, payload, qos, correlation FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [
            Entry(
                int(r[0]), r[1], r[2], bytes(r[3]), int(r[4]), None if r[5] is None else bytes(r[5])
            )
            for r in rows
        ]

    def remove(self, seq: int) -> None:
        with self._lock:
            row = self._db.execute("SELECT size FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._size -= int(row[0])
            self._count -= 1
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._size

    def wait_changed(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._db.close()
