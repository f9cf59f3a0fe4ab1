"""The on-disk outbox (SQLite, WAL): what the device sends while the broker is away or
slow to acknowledge, and what queues behind that (see ``publisher``).

Rows are published in insertion order and deleted only once the broker acknowledged
them (PUBACK for QoS 1), so nothing is lost while the broker is away or across a
restart. The store is bounded by ``max_bytes``: when over the cap, the oldest telemetry
is dropped first; answers (predictions, errors) are never dropped.

Writers never checkpoint: SQLite's automatic checkpoint would copy the write-ahead log
into the database (and sync it) inside whichever ``add`` or ``remove`` crossed the
threshold, stalling the answer that made that write (milliseconds here, far more on an
SD card). The publisher thread calls ``checkpoint`` instead, from a connection of its
own, which runs beside the writers without blocking them.

A full state folder is a mode, not an end: a write that fails (``database or disk is
full``) raises ``StorageError`` and sets ``disk_full``; the publisher then keeps new
messages in memory. Deleting acknowledged rows must work even then (a delete appends to
the write-ahead log), so the outbox keeps a reserve file of ``RESERVE_BYTES`` beside it,
made while there is room and given up the first time a delete finds no space; a
checkpoint lets the log be written over from its start again. ``recover`` re-makes the
reserve once the folder has room again and leaves the mode.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

ANSWER = "answer"
TELEMETRY = "telemetry"
#: Bytes kept free for the outbox's deletes and checkpoints while the disk is full:
#: deleting 50 acknowledged rows takes about 15 pages of log, and the checkpoint that
#: lets the log be reused may have to grow the database by what the log held.
RESERVE_BYTES = 256 * 1024
#: Free space, beyond the reserve, at which a full state folder counts as writable again.
HEADROOM = 256 * 1024
#: Commits after which ``checkpoint`` copies the write-ahead log into the database
#: (about SQLite's own default of 1000 pages, at two to three pages per commit).
CHECKPOINT_EVERY = 400

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
class Outgoing:
    """A message to store: what ``add`` takes."""

    kind: str
    topic: str
    payload: bytes
    qos: int = 1
    correlation: bytes | None = None


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    correlation: bytes | None


def _set_aside(path: Path, why: str) -> None:
    """Move an outbox that cannot be used (with its write-ahead log) out of the way,
    under a name that says when, so that a person can recover what it holds; the
    daemon starts a new one rather than refusing to serve."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = []
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            target = path.with_name(f"{path.name}.bad-{stamp}{suffix}")
            os.replace(part, target)
            kept.append(f"{target.name} ({target.stat().st_size} bytes)")
    log.error(
        "the outbox %s %s: set aside as %s; starting an empty outbox",
        path,
        why,
        ", ".join(kept),
    )


class Outbox:
    """Thread-safe persistent FIFO of outgoing messages.

    An outbox file that is empty (0 bytes, as a power cut during a write can leave it)
    or not a readable database is set aside under a ``.bad-<time>`` name with an error
    in the log, never read as an empty outbox in its place nor left to stop the daemon.
    """

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.dropped_telemetry = 0
        self._full = False
        self._reserve = path.with_name(path.name + ".reserve")
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size == 0:
                _set_aside(path, "is an empty file (0 bytes), not a database")
            try:
                row = self._open_usable(path)
            except sqlite3.OperationalError:
                # a full disk (opening makes the log and its index): the reserve the last
                # run left makes the room, or the failure is the folder's
                if not self._release_reserve("to open the outbox"):
                    raise
                row = self._open_usable(path)
            self._checkpointer = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None
            )
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the outbox {path}: {exc}; check state_dir") from exc
        self._size, self._count = row
        if not self._make_reserve():  # no room: start as a full disk, until there is
            self._full = True
            log.error("the state folder is full: messages wait in memory until it has room")
        self._commits = 0  # since the last checkpoint

    def _open_usable(self, path: Path) -> tuple[int, int]:
        """``_open``; a file that is not a database, or a malformed one, is set aside
        and a new outbox opened in its place.

        Raises:
            sqlite3.OperationalError: the folder's fault (cannot open, I/O, full).
        """
        try:
            return self._open(path)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            _set_aside(path, f"cannot be read ({exc})")
            return self._open(path)

    def _open(self, path: Path) -> tuple[int, int]:
        """Connect, set the database up; returns its rows' total size and count."""
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.execute(_SCHEMA)
            row = db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox").fetchone()
        except BaseException:
            db.close()
            raise
        self._db = db
        return int(row[0]), int(row[1])

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
        return self.add_many([Outgoing(kind, topic, payload, qos, correlation)])[0]

    def add_many(self, messages: Sequence[Outgoing]) -> list[int | None]:
        """Store messages in order, in one transaction (one write to the log for all);
        returns their sequence numbers (None for telemetry that did not fit)."""
        with self._lock, self._transaction():
            return [self._insert(m) for m in messages]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK on any error (and the counts kept in memory
        back as they were); the caller holds the lock."""
        books = (self._size, self._count, self.dropped_telemetry)
        try:
            self._db.execute("BEGIN")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk does)
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._size, self._count, self.dropped_telemetry = books
                raise
        except sqlite3.OperationalError as exc:  # full, or failing storage
            self._full = True
            raise StorageError(f"the outbox cannot be written: {exc}") from exc
        self._commits += 1

    def _insert(self, m: Outgoing) -> int | None:
        size = len(m.payload) + len(m.topic) + 64
        if self._size + size > self.max_bytes:
            self._drop_telemetry(self._size + size - self.max_bytes)
        if self._size + size > self.max_bytes:
            if m.kind == TELEMETRY:
                self.dropped_telemetry += 1
                return None
            log.warning("outbox over its cap (%d bytes); keeping the answer anyway", self.max_bytes)
        cur = self._db.execute(
            "INSERT INTO outbox (kind, topic, payload, qos, correlation, size) "
            "VALUES (?,?,?,?,?,?)",
            (m.kind, m.topic, m.payload, m.qos, m.correlation, size),
        )
        self._size += size
        self._count += 1
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
        self.remove_many((seq,))

    def remove_many(self, seqs: Iterable[int]) -> None:
        """Delete these entries (unknown ones are skipped) in one transaction; on a full
        disk, with the room the reserve leaves.

        Raises:
            StorageError: not even the reserve made room; the entries are still there.
        """
        wanted = [(seq,) for seq in seqs]
        if not wanted:
            return
        try:
            self._delete(wanted)
        except StorageError:
            if not self._release_reserve("to delete acknowledged messages"):
                raise
            self.checkpoint(force=True)
            self._delete(wanted)

    def _delete(self, wanted: list[tuple[int]]) -> None:
        with self._lock, self._transaction():
            for key in wanted:
                row = self._db.execute("SELECT size FROM outbox WHERE seq = ?", key).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", key)
                    self._size -= int(row[0])
                    self._count -= 1

    @property
    def disk_full(self) -> bool:
        """True from a write that failed for want of space until ``recover``."""
        return self._full

    def recover(self) -> bool:
        """While ``disk_full``: checkpoint (giving the log's space back) and
        leave the mode once the folder has ``RESERVE_BYTES + HEADROOM`` free and the
        reserve is made again. True when the outbox can store again."""
        if not self._full:
            return True
        self.checkpoint(force=True, truncate=True)  # the log's space back to the folder
        try:
            st = os.statvfs(self._reserve.parent)
        except OSError:
            return False
        if st.f_bavail * st.f_frsize < RESERVE_BYTES + HEADROOM or not self._make_reserve():
            return False
        self._full = False
        log.warning("the state folder has room again: the outbox stores messages again")
        return True

    def _make_reserve(self) -> bool:
        """Write the reserve file where missing; False when there is no room for it."""
        try:
            if self._reserve.stat().st_size >= RESERVE_BYTES:
                return True
        except OSError:
            pass
        try:
            with open(self._reserve, "wb") as f:
                f.write(bytes(RESERVE_BYTES))  # written, not sparse: the blocks are taken
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            log.warning("no room for the outbox's %d-byte reserve: %s", RESERVE_BYTES, exc)
            return False
        return True

    def _release_reserve(self, purpose: str) -> bool:
        """Give the reserve's space to the outbox; False when there was none."""
        try:
            self._reserve.unlink()
        except OSError:
            return False
        log.warning(
            "the state folder is full: released the outbox's %d-byte reserve %s",
            RESERVE_BYTES,
            purpose,
        )
        return True

    @property
    def checkpoint_due(self) -> bool:
        """True once ``CHECKPOINT_EVERY`` commits piled up since the last checkpoint."""
        with self._lock:
            return self._commits >= CHECKPOINT_EVERY

    def checkpoint(self, force: bool = False, *, truncate: bool = False) -> bool:
        """Copy the write-ahead log into the database once ``CHECKPOINT_EVERY`` commits
        piled up (or now, with ``force``); True when a checkpoint ran. Writers go on
        meanwhile: this uses its own connection and takes no lock of the outbox.
        ``truncate`` also cuts the log file to nothing, giving its space back (it waits
        for no writer: busy, it does what it can)."""
        with self._lock:
            if not force and self._commits < CHECKPOINT_EVERY:
                return False
            self._commits = 0
        mode = "TRUNCATE" if truncate else "PASSIVE"
        try:
            self._checkpointer.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:  # busy or failing storage: the log just grows a bit
            log.warning("outbox checkpoint failed: %s", exc)
            return False
        return True

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._size

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._checkpointer.close()
            self._db.close()
