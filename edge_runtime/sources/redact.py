"""A camera URL's ``user:password@`` kept out of what a source tells (its state's
detail, retained on MQTT, and the log): FFmpeg's errors name the URL as it was given."""

from __future__ import annotations

import re
from urllib.parse import unquote


def _userinfo(url: str) -> str:
    """The ``user:password`` of ``url`` ("" when it has none); found after any scheme,
    however many slashes follow it (a mistyped URL shows no password either)."""
    _, sep, rest = url.partition(":")
    if not sep:
        return ""
    return re.split(r"[/?#]", rest.lstrip("/"), maxsplit=1)[0].rpartition("@")[0]


def without_password(url: str) -> str:
    """``url`` as logs may show it: an IP camera's ``user:password@`` left out."""
    userinfo = _userinfo(url)
    return url.replace(f"{userinfo}@", "", 1) if userinfo else url


def redacted(text: str, url: str) -> str:
    """``text`` (an error's message) with ``url``'s ``user:password@`` left out wherever
    it appears, and the password wherever else it does, as written or decoded."""
    userinfo = _userinfo(url)
    if not userinfo:
        return text
    text = text.replace(f"{userinfo}@", "")
    password = userinfo.partition(":")[2]
    for secret in sorted({password, unquote(password)} - {""}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
