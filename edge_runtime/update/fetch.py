"""Download a bundle named by an update notice: ``file://``, ``http://`` or ``https://``
(TLS verified against the system's CAs), streamed to disk with a size cap and a timeout
on every read, so a server that never answers or never stops cannot hold or fill the
device."""

from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from edge_runtime.errors import IntegrityError, SizeLimitError, UpdateError

CHUNK = 64 * 1024


class DownloadError(UpdateError):
    reason = "download"


class DownloadTimeout(DownloadError):
    reason = "timeout"


class TruncatedDownload(DownloadError):
    reason = "truncated"


def fetch(
    url: str,
    dest: Path,
    *,
    size: int,
    sha256: str,
    max_bytes: int,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the bundle at ``url`` to ``dest``; its size and sha256 must match the notice.

    Raises:
        SizeLimitError: the notice's size, or the bytes received, exceed ``max_bytes``.
        DownloadTimeout: no data for ``timeout`` seconds.
        TruncatedDownload: the transfer ended before ``size`` bytes.
        IntegrityError: more bytes than announced, or another sha256.
        DownloadError: the URL cannot be fetched (scheme, refused, HTTP error).
    """
    if size > max_bytes:
        raise SizeLimitError(f"the bundle is {size} bytes; this device takes at most {max_bytes}")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("file", "http", "https"):
        raise DownloadError(f"unsupported URL scheme {scheme!r}; use https, http or file")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as source, open(dest, "wb") as out:
            while True:
                block = source.read(CHUNK)
                if not block:
                    break
                received += len(block)
                if received > size:
                    raise IntegrityError(f"the download is longer than the announced {size} bytes")
                digest.update(block)
                out.write(block)
                if progress is not None:
                    progress(received, size)
    except (socket.timeout, TimeoutError) as exc:
        raise DownloadTimeout(f"no data from {url} for {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise DownloadTimeout(f"no answer from {url} within {timeout:g} s") from exc
        raise DownloadError(f"cannot fetch {url}: {exc.reason}") from exc
    except OSError as exc:
        raise DownloadError(f"cannot fetch {url}: {exc}") from exc
    if received < size:
        raise TruncatedDownload(f"the download stopped after {received} of {size} bytes")
    if digest.hexdigest() != sha256:
        raise IntegrityError("the downloaded bundle's sha256 differs from the notice's")
    return dest
