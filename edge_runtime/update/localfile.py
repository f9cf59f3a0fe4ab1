"""``file://`` bundles: read only from the folders the config names, and only as a
regular file reached without a single symbolic link below that folder.

A notice is written by whoever can publish on the broker, so its ``file://`` URL is
hostile input: it may name ``/etc/shadow``, a FIFO nobody writes to, a device, or a link
out of the allowed folder. Each path component below the root is opened relative to its
parent with ``O_NOFOLLOW`` (``..`` is refused before anything is opened), the final one
also with ``O_NONBLOCK`` so that opening a FIFO cannot block, and its type is checked with
``fstat`` before a byte is read. The file's size must be the notice's before anything is
copied, so a file of another size leaves nothing behind; the copy is hashed while it is
made and removed when the hash differs. Messages never tell a local file's size or type:
they go into events that anyone on the broker may read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_runtime.errors import IntegrityError
from edge_runtime.update.download_errors import DownloadTimeout, LocalFileRefused

BLOCK = 64 * 1024


def local_path(url: str) -> str:
    """The absolute, normalised path a ``file://`` URL names.

    Raises:
        LocalFileRefused: a remote host, a relative path or a ``..`` component.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise LocalFileRefused("file:// URLs must name a local file (no host)")
    path = urllib.request.url2pathname(parts.path)
    if not os.path.isabs(path) or ".." in path.split("/"):
        raise LocalFileRefused("file:// URLs must name an absolute path without '..'")
    return os.path.normpath(path)


def _below(path: str, roots: Sequence[Path]) -> tuple[str, list[str]] | None:
    """The root ``path`` lies in (as written in the config, or resolved) and the
    components below it; None when it lies in none."""
    for root in roots:
        for form in dict.fromkeys((os.path.normpath(str(root)), os.path.realpath(root))):
            prefix = form.rstrip("/") + "/"
            if path.startswith(prefix) and len(path) > len(prefix):
                return form, path[len(prefix) :].split("/")
    return None


def _open_below(root: str, parts: list[str]) -> int:
    """A read-only descriptor of the regular file ``root/parts...``, no link followed
    below ``root``. Raises LocalFileRefused (without saying what was found)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    refused = LocalFileRefused("the file:// URL does not name a readable regular file")
    try:
        fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise refused from exc
    try:
        for name in parts[:-1]:
            child = os.open(name, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow, dir_fd=fd)
            os.close(fd)
            fd = child
        # lstat first: a FIFO or device is refused before it is even opened
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
            raise refused
        flags = os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        handle = os.open(parts[-1], flags, dir_fd=fd)
    except OSError as exc:  # a link (ELOOP, ENOTDIR), missing, not permitted
        raise refused from exc
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(handle).st_mode):  # swapped between the two checks
        os.close(handle)
        raise refused
    return handle


def copy_local(
    url: str,
    dest: Path,
    *,
    roots: Sequence[Path],
    size: int,
    sha256: str,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Copy the bundle a ``file://`` URL names to ``dest`` (created 0600, afresh: a local
    copy is never resumed), checking its size first and its sha256 while copying.

    Raises:
        LocalFileRefused: no ``roots`` configured, a path outside them, a link, or not a
            regular file.
        IntegrityError: the file's size or sha256 is not the notice's (nothing kept).
        DownloadTimeout: the copy made no progress for ``timeout`` seconds.
    """
    if not roots:
        raise LocalFileRefused("file:// URLs are refused: this device names no [update] file_roots")
    found = _below(local_path(url), roots)
    if found is None:
        raise LocalFileRefused("the file:// URL is outside the folders [update] file_roots names")
    fd = _open_below(*found)
    try:
        if os.fstat(fd).st_size != size:
            raise IntegrityError("the file:// URL names a file that is not the announced size")
        dest.unlink(missing_ok=True)
        try:
            _copy(fd, dest, size, sha256, timeout, progress)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    finally:
        os.close(fd)
    return dest


def _copy(
    fd: int,
    dest: Path,
    size: int,
    sha256: str,
    timeout: float,
    progress: Callable[[int, int], None] | None,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    out = os.open(dest, flags, 0o600)
    digest, done, last = hashlib.sha256(), 0, time.monotonic()
    try:
        while done < size:
            block = os.read(fd, min(BLOCK, size - done))  # never more than announced
            if not block:
                break  # the file shrank while it was read
            os.write(out, block)
            digest.update(block)
            done += len(block)
            now = time.monotonic()
            if now - last > timeout:
                raise DownloadTimeout(f"reading the local file took over {timeout:g} s a block")
            last = now
            if progress is not None:
                progress(done, size)
        os.fsync(out)
    finally:
        os.close(out)
    if done != size or digest.hexdigest() != sha256:
        raise IntegrityError("the file:// URL names a file whose sha256 is not the notice's")
