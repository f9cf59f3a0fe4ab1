"""Download a bundle named by an update notice: ``http://`` or ``https://`` (TLS verified
against the system's CAs), or ``file://`` below the configured folders (``localfile``),
streamed to disk with a size cap and a timeout on every read, so a server that never
answers or never stops cannot hold or fill the device.

A dropped connection is resumed where it stopped (an HTTP ``Range`` request; a server
that ignores it sends the whole file again and the download starts over), as long as
each attempt brings new bytes. What was received stays in ``dest`` when the download
fails, so a later call (after a restart) resumes from there too.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_runtime.errors import IntegrityError, SizeLimitError
from edge_runtime.update.download_errors import (
    DownloadError,
    DownloadTimeout,
    TruncatedDownload,
)
from edge_runtime.update.localfile import copy_local

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
#: Attempts after a dropped connection (each must have brought new bytes).
MAX_RESUMES = 20


def fetch(
    url: str,
    dest: Path,
    *,
    size: int,
    sha256: str,
    max_bytes: int,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
    ca_file: Path | None = None,
    file_roots: Sequence[Path] = (),
) -> Path:
    """Write the bundle at ``url`` to ``dest`` (created 0600; resuming what ``dest``
    holds already); its size and sha256 must match the notice. ``https`` servers are
    verified against ``ca_file`` when given, else against the system's CAs. A ``file://``
    URL is read only below one of ``file_roots`` (none: refused), see ``localfile``.

    Raises:
        SizeLimitError: the notice's size, or the bytes received, exceed ``max_bytes``.
        DownloadTimeout: no data for ``timeout`` seconds.
        TruncatedDownload: the transfer ended before ``size`` bytes, and resuming it
            brought nothing more.
        IntegrityError: more bytes than announced, or another sha256.
        DownloadError: the URL cannot be fetched (scheme, refused, HTTP error).
        LocalFileRefused: a ``file://`` URL this device may not read.
    """
    if size > max_bytes:
        raise SizeLimitError(f"the bundle is {size} bytes; this device takes at most {max_bytes}")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("file", "http", "https"):
        raise DownloadError(f"unsupported URL scheme {scheme!r}; use https, http or file")
    if scheme == "file":
        return copy_local(
            url,
            dest,
            roots=file_roots,
            size=size,
            sha256=sha256,
            timeout=timeout,
            progress=progress,
        )
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise DownloadError(f"cannot use the CA file {ca_file}: {exc}") from exc
    digest = hashlib.sha256()
    received = _hash_existing(dest, digest, size)
    if received:
        log.info("resuming the download of %s at byte %d of %d", url, received, size)
    attempts, best = 0, received  # best: the most bytes held so far
    while received < size:
        restarted = False
        try:
            received = _transfer(url, dest, received, size, digest, timeout, progress, context)
            why = "the body ended early"
        except _Restart:
            log.info("%s does not resume downloads; starting over", url)
            digest, received = hashlib.sha256(), 0
            dest.unlink(missing_ok=True)
            restarted, why = True, "the server does not resume"
        except _Dropped as exc:
            received, why = exc.received, exc.why
        if received >= size:
            break
        if (received <= best and not restarted) or attempts >= MAX_RESUMES:
            raise TruncatedDownload(
                f"the download stopped after {max(received, best)} of {size} bytes ({why})"
            )
        best = max(best, received)
        attempts += 1
        if received:
            log.warning(
                "download of %s cut at %d of %d bytes (%s); resuming", url, received, size, why
            )
        time.sleep(min(2.0, 0.1 * attempts))
    if digest.hexdigest() != sha256:
        raise IntegrityError("the downloaded bundle's sha256 differs from the notice's")
    return dest


class _Restart(Exception):
    """The server ignored the range: the body is the whole file."""


class _Dropped(Exception):
    def __init__(self, received: int, why: str) -> None:
        super().__init__(why)
        self.received = received
        self.why = why


def _hash_existing(dest: Path, digest: Any, size: int) -> int:
    """Feed what ``dest`` holds to ``digest``; returns its length (0: start afresh)."""
    try:
        have = dest.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:
        dest.unlink()
        return 0
    with open(dest, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return have


def _open(url: str, start: int, timeout: float, context: ssl.SSLContext) -> tuple[Any, int]:
    """The response and the offset its body starts at (0 when a range was ignored)."""
    request = urllib.request.Request(url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout, context=context)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise DownloadTimeout(f"no answer from {url} within {timeout:g} s") from exc
        raise DownloadError(f"cannot fetch {url}: {exc.reason}") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise DownloadTimeout(f"no answer from {url} within {timeout:g} s") from exc
    except OSError as exc:
        raise DownloadError(f"cannot fetch {url}: {exc}") from exc
    if start and getattr(response, "status", 200) == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != start:
            response.close()
            raise DownloadError(f"{url} answered the range request with another range")
        return response, start
    return response, 0


def _transfer(
    url: str,
    dest: Path,
    start: int,
    size: int,
    digest: Any,
    timeout: float,
    progress: Callable[[int, int], None] | None,
    context: ssl.SSLContext,
) -> int:
    """One attempt; returns the bytes now in ``dest``.

    Raises:
        _Dropped: the connection was cut after some bytes (resumable).
        _Restart: the server sent the whole file instead of the range asked for.
    """
    source, offset = _open(url, start, timeout, context)
    if offset != start:
        source.close()
        raise _Restart
    received = start
    try:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        out = os.fdopen(os.open(dest, flags, 0o600), "ab")
    except OSError as exc:
        source.close()
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    with source, out:
        while True:
            try:
                block = source.read(CHUNK)
            except (socket.timeout, TimeoutError) as exc:
                raise DownloadTimeout(f"no data from {url} for {timeout:g} s") from exc
            except (http.client.HTTPException, OSError) as exc:
                raise _Dropped(received, type(exc).__name__) from None
            if not block:
                return received
            if received + len(block) > size:
                raise IntegrityError(f"the download is longer than the announced {size} bytes")
            try:
                out.write(block)
            except OSError as exc:
                raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}") from exc
            received += len(block)
            digest.update(block)
            if progress is not None:
                progress(received, size)
