"""Why a bundle could not be fetched; ``reason`` is the code its refusal event carries."""

from __future__ import annotations

from edge_runtime.errors import UpdateError


class DownloadError(UpdateError):
    reason = "download"


class DownloadTimeout(DownloadError):
    reason = "timeout"


class TruncatedDownload(DownloadError):
    reason = "truncated"


class LocalFileRefused(UpdateError):
    """A ``file://`` URL this device may not read; nothing was read. Not worth a retry:
    the same URL is refused again."""

    reason = "url"
