"""A camera URL's ``user:password@`` kept out of what a source tells (its state's
detail, retained on MQTT, and the log): FFmpeg's errors name the URL as it was given."""

from __future__ import annotations

import re
from urllib.parse import unquote

#: A ``user:password@`` whose password holds a / ? or # as written (not %-encoded), which
#: ends the authority early: a user, a colon no port number follows, up to the last @.
_MISTYPED = re.compile(r"[^:/?#@\s]+:(?!\d*(?:/|\Z))\S*@")


def _userinfo(url: str) -> str:
    """The ``user:password`` of ``url`` ("" when it has none); found after any scheme,
    however many slashes follow it, and with a password that is not %-encoded (a
    mistyped URL shows no password either)."""
    _, sep, rest = url.partition(":")
    if not sep:
        return ""
    rest = rest.lstrip("/")
    userinfo = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[0]
    if userinfo:
        return userinfo
    mistyped = _MISTYPED.match(rest)
    return mistyped.group()[:-1] if mistyped else ""


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
