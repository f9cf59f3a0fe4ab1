"""Atomic file replacement: temp file in the same folder, fsync, ``os.replace``, fsync folder.

A reader (or a power cut) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Union

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(folder: PathLike) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename itself still happened
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: PathLike, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write ``path`` through a temp file; it replaces ``path`` only if the block succeeds.

    The temp file is created with ``mode`` from the start (``os.open``), so a 0600 file is
    never readable by others, not even briefly.
    """
    target = Path(path)
    folder = target.parent
    tmp = folder / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    handle = os.fdopen(fd, "wb")
    try:
        os.fchmod(handle.fileno(), mode)  # the umask may have removed bits we want (never adds any)
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(tmp, target)
    except BaseException:
        handle.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def atomic_write_bytes(path: PathLike, data: bytes, *, mode: int = 0o644) -> None:
    with atomic_writer(path, mode=mode) as handle:
        handle.write(data)
