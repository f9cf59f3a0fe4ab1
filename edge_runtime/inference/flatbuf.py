"""A minimal, bounds-checked reader of FlatBuffers tables.

Enough to walk a TFLite model and its metadata without the ``flatbuffers`` or
``tflite`` packages: tables, scalars, strings and vectors, each access checked against
the buffer so that a corrupt file raises ``FlatBufferError`` instead of reading garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator


class FlatBufferError(ValueError):
    """The bytes are not a well-formed FlatBuffer of the expected shape."""


def _unpack(fmt: str, buf: bytes, pos: int) -> int:
    if pos < 0 or pos + struct.calcsize(fmt) > len(buf):
        raise FlatBufferError(f"offset {pos} outside a {len(buf)}-byte buffer")
    return struct.unpack_from(fmt, buf, pos)[0]  # type: ignore[no-any-return]


class Table:
    """One table at ``pos`` in ``buf``; fields are addressed by their schema slot number."""

    __slots__ = ("buf", "pos", "_vtable", "_vtable_len")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self._vtable = pos - _unpack("<i", buf, pos)
        self._vtable_len = _unpack("<H", buf, self._vtable)

    @classmethod
    def root(cls, buf: bytes) -> Table:
        return cls(buf, _unpack("<I", buf, 0))

    def _offset(self, slot: int) -> int:
        entry = 4 + 2 * slot
        if entry + 2 > self._vtable_len:
            return 0
        return _unpack("<H", self.buf, self._vtable + entry)

    def has(self, slot: int) -> bool:
        return self._offset(slot) != 0

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        off = self._offset(slot)
        return default if off == 0 else _unpack("<" + fmt, self.buf, self.pos + off)

    def _indirect(self, slot: int) -> int | None:
        off = self._offset(slot)
        if off == 0:
            return None
        at = self.pos + off
        return at + _unpack("<I", self.buf, at)

    def table(self, slot: int) -> Table | None:
        at = self._indirect(slot)
        return None if at is None else Table(self.buf, at)

    def string(self, slot: int) -> str | None:
        at = self._indirect(slot)
        if at is None:
            return None
        return _string_at(self.buf, at)

    def _vector(self, slot: int) -> tuple[int, int]:
        at = self._indirect(slot)
        if at is None:
            return 0, 0
        length = _unpack("<I", self.buf, at)
        if at + 4 + length > len(self.buf):
            raise FlatBufferError(f"vector of {length} elements in a {len(self.buf)}-byte buffer")
        return at + 4, length

    def scalars(self, slot: int, fmt: str) -> list[int]:
        start, length = self._vector(slot)
        size = struct.calcsize(fmt)
        if start + size * length > len(self.buf):
            raise FlatBufferError("vector runs past the end of the buffer")
        return list(struct.unpack_from(f"<{length}{fmt}", self.buf, start)) if length else []

    def floats(self, slot: int) -> list[float]:
        return [float(v) for v in self.scalars(slot, "f")]

    def tables(self, slot: int) -> Iterator[Table]:
        start, length = self._vector(slot)
        for i in range(length):
            at = start + 4 * i
            yield Table(self.buf, at + _unpack("<I", self.buf, at))

    def strings(self, slot: int) -> list[str]:
        start, length = self._vector(slot)
        out = []
        for i in range(length):
            at = start + 4 * i
            out.append(_string_at(self.buf, at + _unpack("<I", self.buf, at)))
        return out

    def bytes_vector(self, slot: int) -> bytes:
        start, length = self._vector(slot)
        if start + length > len(self.buf):
            raise FlatBufferError("byte vector runs past the end of the buffer")
        return bytes(self.buf[start : start + length])


def _string_at(buf: bytes, at: int) -> str:
    length = _unpack("<I", buf, at)
    if at + 4 + length > len(buf):
        raise FlatBufferError("string runs past the end of the buffer")
    return bytes(buf[at + 4 : at + 4 + length]).decode("utf-8", errors="replace")
