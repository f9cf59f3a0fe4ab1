"""Where the reader puts member bytes: memory, a staging folder, or nowhere (hash only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from edge_runtime.errors import BundleError


class Sink:
    """Receives one member at a time: ``begin``, ``write``..., ``end``; or ``whole``."""

    def begin(self, name: str) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        pass

    def whole(self, name: str, data: bytes) -> None:
        self.begin(name)
        self.write(data)
        self.end()


class NullSink(Sink):
    """Keeps nothing: for checking a bundle in constant memory."""


class MemorySink(Sink):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self._name: str | None = None
        self._parts: list = []  # type: ignore[type-arg]

    def begin(self, name: str) -> None:
        self._name, self._parts = name, []

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def end(self) -> None:
        assert self._name is not None
        self.files[self._name] = b"".join(self._parts)
        self._name, self._parts = None, []

    def whole(self, name: str, data: bytes) -> None:
        pass  # manifest and signatures are returned separately, not as files


class DirSink(Sink):
    """Writes each member as ``folder/name`` (names are flat and checked before this)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: BinaryIO | None = None

    def begin(self, name: str) -> None:
        if "/" in name or name in ("", ".", ".."):
            raise BundleError(f"refusing to stage {name!r}: not a flat file name")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.folder / name, flags, 0o644)
        except OSError as exc:
            raise BundleError(
                f"cannot write {name} into the staging folder {self.folder}: {exc}"
            ) from exc
        self._handle = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self._handle is not None
        try:
            self._handle.write(data)
        except OSError as exc:
            raise BundleError(f"cannot write into the staging folder {self.folder}: {exc}") from exc

    def end(self) -> None:
        assert self._handle is not None
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise BundleError(f"cannot write into the staging folder {self.folder}: {exc}") from exc
        finally:
            self._handle.close()
            self._handle = None

    def finish(self) -> None:
        if self._handle is not None:
            raise BundleError("staging ended with a member still open")

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
