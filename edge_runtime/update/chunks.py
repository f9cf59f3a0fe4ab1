"""A bundle sent through the broker, for devices that can reach nothing else.

The operator publishes the bundle in chunks, each retained (QoS 1) on

    <prefix>/bundles/<first 16 hex digits of the bundle's sha256>/<index>

and then the notice, which carries instead of a ``url``::

    "chunks": {"size": 262144, "sha256": ["<chunk 0>", "<chunk 1>", ...]}

A device subscribes to ``.../<key>/+``, checks each chunk against its hash, writes it at
its offset in ``downloads/<sha256>.part`` and notes it in ``downloads/<sha256>.have``
(after an fsync), so a broker restart (the retained chunks are sent again on
resubscription) or a device restart resumes with the chunks still missing. The
assembled file must then match the bundle's sha256, and goes through the same
verification as a downloaded one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.bundle.atomic import atomic_writer
from edge_runtime.errors import IntegrityError, UpdateError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 256 * 1024
MIN_CHUNK_BYTES = 1024
MAX_CHUNK_BYTES = 8 * 1024 * 1024
#: Most chunks of one bundle. A device receives them as retained messages on one
#: subscription, and a broker may deliver no more than 1,000 of those at once (ejabberd's
#: ``match_retained_limit``); larger bundles are sent in larger chunks instead.
MAX_CHUNKS = 1000
#: The assembly's record is saved at most this often (and when complete).
SAVE_EVERY = 0.5
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BadChunkPlan(UpdateError):
    reason = "bad_notice"


def chunk_key(sha256: str) -> str:
    return sha256[:16]


def chunk_topic(prefix: str, sha256: str) -> str:
    """The folder of a bundle's chunk topics (chunk ``i`` is ``<this>/<i>``)."""
    return f"{prefix}/bundles/{chunk_key(sha256)}"


@dataclass(frozen=True)
class ChunkPlan:
    size: int  # bytes per chunk (the last one may be shorter)
    hashes: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.hashes)

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "sha256": list(self.hashes)}


def chunk_size_for(total: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """The chunk size a ``total``-byte bundle is sent with: ``chunk_bytes``, or the
    smallest multiple of ``MIN_CHUNK_BYTES`` above it that needs at most ``MAX_CHUNKS``.

    Raises:
        ValueError: ``chunk_bytes`` is out of bounds, or the bundle is too large for MQTT.
    """
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk size must be {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES} bytes")
    least = math.ceil(math.ceil(total / MAX_CHUNKS) / MIN_CHUNK_BYTES) * MIN_CHUNK_BYTES
    size = max(chunk_bytes, least)
    if size > MAX_CHUNK_BYTES:
        raise ValueError(
            f"a {total}-byte bundle needs more than {MAX_CHUNKS} chunks of {MAX_CHUNK_BYTES} "
            "bytes: send it with --url"
        )
    return size


def split(data: bytes, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[ChunkPlan, list[bytes]]:
    """The host side: a bundle's chunks and their plan for the notice, in chunks of
    ``chunk_size_for(len(data), chunk_bytes)`` bytes (at most ``MAX_CHUNKS`` of them)."""
    size = chunk_size_for(len(data), chunk_bytes)
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    plan = ChunkPlan(size, tuple(hashlib.sha256(p).hexdigest() for p in pieces))
    return plan, pieces


def parse_plan(doc: object, bundle_size: int) -> ChunkPlan:
    """The device side: the notice's ``chunks``, checked against the bundle's size.

    Raises:
        BadChunkPlan: what is wrong with it.
    """
    if not isinstance(doc, dict):
        raise BadChunkPlan('notice "chunks" must be an object {"size", "sha256"}')
    size, hashes = doc.get("size"), doc.get("sha256")
    if not isinstance(size, int) or not MIN_CHUNK_BYTES <= size <= MAX_CHUNK_BYTES:
        raise BadChunkPlan(f'notice "chunks.size" must be {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}')
    if not isinstance(hashes, list) or not all(
        isinstance(h, str) and _HEX64.match(h) for h in hashes
    ):
        raise BadChunkPlan('notice "chunks.sha256" must be a list of 64-hex hashes')
    expected = math.ceil(bundle_size / size)
    if max(expected, len(hashes)) > MAX_CHUNKS:
        raise BadChunkPlan(
            f"notice plans {max(expected, len(hashes))} chunks; at most {MAX_CHUNKS} (a broker "
            "may deliver no more retained messages to one subscription): publish it again "
            "with larger chunks"
        )
    if len(hashes) != expected:
        raise BadChunkPlan(
            f"notice lists {len(hashes)} chunks; a {bundle_size}-byte bundle in {size}-byte "
            f"chunks has {expected}"
        )
    return ChunkPlan(size, tuple(hashes))


class ChunkAssembly:
    """Chunks of one bundle put together on disk, resumable across restarts."""

    def __init__(self, folder: Path, sha256: str, total: int, plan: ChunkPlan) -> None:
        self.sha256 = sha256
        self.total = total
        self.plan = plan
        self.part = folder / f"{sha256}.part"
        self.record = folder / f"{sha256}.have"
        folder.mkdir(parents=True, exist_ok=True)
        self.have: set[int] = self._load()
        self.rejected = 0
        self._dirty = False
        self._saved = time.monotonic()
        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.ftruncate(fd, total)
        finally:
            os.close(fd)
        self.kept = len(self.have)

    def _load(self) -> set[int]:
        """The chunks a previous run stored (only if it assembled the same plan)."""
        try:
            doc = json.loads(self.record.read_text(encoding="utf-8"))
            if doc.get("plan") == self.plan.to_json() and self.part.exists():
                return {i for i in doc.get("have", []) if isinstance(i, int)}
        except (OSError, ValueError, AttributeError):
            pass
        self.part.unlink(missing_ok=True)
        return set()

    @property
    def complete(self) -> bool:
        return len(self.have) == self.plan.count

    @property
    def received_bytes(self) -> int:
        return sum(self._length(i) for i in self.have)

    def _length(self, index: int) -> int:
        return min(self.plan.size, self.total - index * self.plan.size)

    def add(self, index: int, data: bytes) -> bool:
        """Store chunk ``index``; False when it is a repeat, out of range or damaged
        (a damaged chunk is counted in ``rejected`` and waited for again)."""
        if index in self.have or not 0 <= index < self.plan.count:
            return False
        if (
            len(data) != self._length(index)
            or hashlib.sha256(data).hexdigest() != self.plan.hashes[index]
        ):
            self.rejected += 1
            log.warning("chunk %d of %s does not match its hash; ignored", index, self.sha256[:16])
            return False
        fd = os.open(self.part, os.O_WRONLY)
        try:
            os.pwrite(fd, data, index * self.plan.size)
            self.have.add(index)
            self._dirty = True
            if self.complete or time.monotonic() - self._saved >= SAVE_EVERY:
                os.fsync(fd)
                self._save()
        finally:
            os.close(fd)
        return True

    def flush(self) -> None:
        """Make every stored chunk durable and recorded (before waiting a long time)."""
        if not self._dirty:
            return
        fd = os.open(self.part, os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._save()

    def _save(self) -> None:
        with atomic_writer(self.record) as handle:
            handle.write(
                json.dumps({"plan": self.plan.to_json(), "have": sorted(self.have)}).encode()
            )
        self._dirty = False
        self._saved = time.monotonic()

    def finish(self) -> Path:
        """The assembled bundle (``.part``), once its sha256 is the announced one.

        Raises:
            IntegrityError: the chunks match their hashes but not the bundle's.
        """
        digest = hashlib.sha256()
        with open(self.part, "rb") as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
        if digest.hexdigest() != self.sha256:
            self.discard()
            raise IntegrityError("the assembled bundle's sha256 differs from the notice's")
        return self.part

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)
