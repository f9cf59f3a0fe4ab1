"""Low-level tar reading for bundles: a byte-capped stream and a strict USTAR header parser.

Bundles come from the network, so the tar is parsed here rather than by ``tarfile``:
only USTAR/GNU regular-file headers with valid checksums, flat safe names and octal
sizes are accepted, every byte read is counted against a cap, and an archive that stops
before its end-of-archive marker is refused as truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from edge_runtime.bundle.manifest import FILE_NAME_RE, RESERVED_NAMES
from edge_runtime.errors import BundleError, SizeLimitError

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
CHUNK = 64 * 1024
_MAGICS = (b"ustar\x0000", b"ustar  \x00")
_REGULAR = (b"0", b"\x00")
_TYPE_NAMES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a folder",
    b"6": "a fifo",
    b"7": "a contiguous file",
    b"x": "a pax extended header",
    b"g": "a pax global header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
}


class CappedStream:
    """Reads exactly what is asked from a binary stream, counting against ``max_bytes``."""

    def __init__(self, raw: BinaryIO, max_bytes: int) -> None:
        self._raw = raw
        self.max_bytes = max_bytes
        self.count = 0

    def ensure_room(self, n: int, what: str) -> None:
        """Refuse before reading when ``n`` more bytes would pass the cap.

        Raises:
            SizeLimitError: the bundle would be larger than ``max_bytes``.
        """
        if self.count + n > self.max_bytes:
            raise SizeLimitError(
                f"bundle is larger than the cap of {self.max_bytes} bytes ({what} would reach "
                f"{self.count + n} bytes); refused"
            )

    def read_exact(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes.

        Raises:
            SizeLimitError: the cap would be passed.
            BundleError: the stream ended first (truncated).
        """
        self.ensure_room(n, what)
        parts = []
        got = 0
        while got < n:
            data = self._raw.read(n - got)
            if not data:
                raise BundleError(f"bundle is truncated: the stream ended inside {what}")
            if len(data) > n - got:  # a misbehaving stream; never take more than asked
                raise BundleError(f"stream returned more bytes than asked while reading {what}")
            parts.append(data)
            got += len(data)
        self.count += n
        return b"".join(parts)

    def iter_exact(self, n: int, what: str) -> Iterator[bytes]:
        """``n`` bytes in chunks of at most ``CHUNK``."""
        self.ensure_room(n, what)
        left = n
        while left:
            chunk = self.read_exact(min(CHUNK, left), what)
            left -= len(chunk)
            yield chunk


@dataclass(frozen=True)
class MemberHeader:
    name: str
    size: int


def _field_text(raw: bytes) -> bytes:
    end = raw.find(b"\x00")
    return raw if end < 0 else raw[:end]


def _octal(raw: bytes, what: str) -> int:
    if raw[:1] and raw[0] & 0x80:
        raise BundleError(
            f"tar header: {what} is in binary (base-256) form; such sizes are refused"
        )
    text = _field_text(raw).strip(b" ")
    if not text or any(c not in b"01234567" for c in text):
        raise BundleError(f"tar header: {what} field is not an octal number: {raw!r}")
    return int(text, 8)


def _check_name(name: str) -> str:
    if name.startswith("/"):
        raise BundleError(f"tar member {name!r} has an absolute path; refused")
    parts = name.split("/")
    if ".." in parts:
        raise BundleError(
            f"tar member {name!r} climbs out of the bundle with '..' (path traversal); refused"
        )
    if len(parts) > 1:
        raise BundleError(
            f"tar member {name!r} is inside a folder; bundles hold flat file names only"
        )
    if not FILE_NAME_RE.match(name) and name not in RESERVED_NAMES:
        raise BundleError(f"tar member name {name!r} has characters or a form bundles do not allow")
    return name


def parse_header(block: bytes) -> MemberHeader | None:
    """One 512-byte header; ``None`` for an all-zero block (end of archive).

    Raises:
        BundleError: bad checksum or magic, a member that is not a regular file, or an
            unsafe name.
    """
    if block == ZERO_BLOCK:
        return None
    stored = _octal(block[148:156], "checksum")
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + b" " * 8 + block[156:])
    if stored not in (unsigned, signed):
        raise BundleError("tar header checksum does not match: not a tar file, or corrupt")
    magic = block[257:265]
    if magic not in _MAGICS:
        raise BundleError(f"tar header has no ustar magic ({magic!r}); bundles are USTAR tar files")
    try:
        name = _field_text(block[0:100]).decode("utf-8")
        prefix = _field_text(block[345:500]).decode("utf-8") if magic == _MAGICS[0] else ""
    except UnicodeDecodeError as exc:
        raise BundleError("tar member name is not UTF-8") from exc
    if prefix:
        name = f"{prefix}/{name}"
    typeflag = block[156:157]
    if typeflag not in _REGULAR:
        kind = _TYPE_NAMES.get(typeflag, f"of type {typeflag!r}")
        raise BundleError(f"tar member {name!r} is {kind}; bundles hold regular files only")
    return MemberHeader(_check_name(name), _octal(block[124:136], f"size of {name!r}"))


def padding(size: int) -> int:
    return (-size) % BLOCK
