"""JSON documents that carry images as base64 text, parsed without copying the images.

``json.loads`` of such a document makes the whole text a ``str`` and each image a
second ``str``, and ``b64decode`` a third copy as bytes before decoding: three copies
of a megabyte image and most of the time spent on it. ``lean_loads`` finds the long
string values that are nothing but strict base64 and decodes each straight from the
document's bytes; the rest of the document, with a placeholder in place of each such
value, is parsed by ``json.loads`` as usual.

A document with a backslash anywhere is left to the full parse: without escapes every
string is its own text, so the string boundaries are the quotes, and a string equal to
a placeholder is one whose text is the placeholder, which the count of the placeholders'
token in the text rules out. ``lean_loads`` gives up (None) on whatever else it does not
handle in exactly the way the full parse does: no long base64 value, text that is not
valid JSON, too many strings. The caller then parses the document the usual way, which
gives the answer, or the error, that it always gave.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
import sys
from typing import Any, Callable, Union

#: String values shorter than this (in characters) are parsed as usual; longer than any
#: id a request may carry, so an id is never a placeholder.
MIN_BLOB = 1024
#: Documents with more string literals than this are parsed as usual (the scan for
#: them runs in Python, one step per string).
MAX_STRINGS = 256
#: Whitespace after a long string looked at most; a longer run: parsed as usual.
MAX_RUN = 64
#: The placeholders' common start.
TOKEN = "edge-runtime-b64json:"
_TOKEN_BYTES = TOKEN.encode("utf-8")
_WHITESPACE = b" \t\n\r"
_STRICT = sys.version_info >= (3, 11)  # binascii.a2b_base64(strict_mode=) is 3.11+
_ALPHABET = re.compile(rb"[A-Za-z0-9+/]*={0,2}")

Buffer = Union[bytes, bytearray, memoryview]


def _load_pybase64() -> Callable[[Buffer], bytes] | None:
    """pybase64's decoder (SIMD: a megabyte in a few hundredths of a millisecond where
    binascii takes two), when it is installed; it is optional."""
    try:
        import pybase64
    except ImportError:
        return None
    return functools.partial(pybase64.b64decode, validate=True)


#: The fast decoder, or None: binascii.
fast_decoder = _load_pybase64()


def b64decode_strict(text: Buffer) -> bytes:
    """``base64.b64decode(text, validate=True)`` of ASCII text, read in place, without
    the copy ``b64decode`` makes of it first: when this returns, ``b64decode`` gives the
    same bytes. With pybase64 a few texts ``b64decode`` takes are refused (padding past
    a full group: ``QUJD=``); the caller then leaves them to the full parse.

    Raises:
        binascii.Error: not valid base64.
    """
    if fast_decoder is not None:
        return fast_decoder(text)
    if _STRICT:
        return binascii.a2b_base64(text, strict_mode=True)
    if not _ALPHABET.fullmatch(text):  # what b64decode(validate=True) does before 3.11
        raise binascii.Error("Non-base64 digit found")
    return binascii.a2b_base64(text)


def lean_loads(data: bytes) -> tuple[Any, dict[str, bytes]] | None:
    """The document in ``data`` (UTF-8 JSON) with each string value of ``MIN_BLOB``
    characters or more that is strict base64 replaced by a placeholder, and what each
    placeholder's value decodes to; None when it cannot tell (see the module)."""
    if b"\\" in data:
        return None
    view = memoryview(data)
    parts: list[Buffer] = []
    images: dict[str, bytes] = {}
    kept = 0  # data[:kept] is in parts
    scan = 0
    for _ in range(MAX_STRINGS):
        start = data.find(b'"', scan)
        if start < 0:
            break
        end = data.find(b'"', start + 1)
        if end < 0:
            return None
        scan = end + 1
        if end - start - 1 < MIN_BLOB or _is_key(data, scan):
            continue
        try:
            image = b64decode_strict(view[start + 1 : end])
        except (binascii.Error, ValueError):
            continue  # not an image: parsed as usual
        placeholder = f"{TOKEN}{len(images)}"
        images[placeholder] = image
        parts += (view[kept : start + 1], placeholder.encode("utf-8"))
        kept = end
    else:
        if data.find(b'"', scan) >= 0:
            return None  # more strings than are worth scanning here
    if not images:
        return None
    parts.append(view[kept:])
    small = b"".join(parts)
    if small.count(_TOKEN_BYTES) != len(images):
        return None  # the document holds the token itself
    try:
        return json.loads(small.decode("utf-8")), images
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _is_key(data: bytes, at: int) -> bool:
    """True when a colon follows ``at`` (after whitespace): the string was a key; True
    too after a long run of whitespace (the string is then parsed as usual)."""
    end = min(at + MAX_RUN, len(data))
    for i in range(at, end):
        if data[i] not in _WHITESPACE:
            return data[i] == 0x3A
    return end < len(data)
