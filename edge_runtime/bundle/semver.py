"""Semantic versions (semver.org 2.0.0): parsing and precedence, pre-releases included.

``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0-rc.1 < 1.0.0``; build metadata
(``+build.5``) is kept for display but ignored by comparison, as the spec says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from edge_runtime.errors import BundleError

_NUMBER = r"0|[1-9]\d*"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"^(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    rf"(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?$"
)
MAX_VERSION_LENGTH = 128

# A pre-release identifier as a sort key: numbers sort before words, numbers numerically.
_PreKey = tuple[tuple[int, int, str], ...]


def _pre_key(pre: tuple[str, ...]) -> _PreKey:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre)


@dataclass(frozen=True, eq=False)
class SemVer:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``MAJOR.MINOR.PATCH[-PRE][+BUILD]``.

        Raises:
            BundleError: not a semantic version (the message shows the text).
        """
        if not isinstance(text, str) or len(text) > MAX_VERSION_LENGTH:
            raise BundleError(f"version must be a semantic version string like 1.2.0, got {text!r}")
        match = _SEMVER.match(text)
        if match is None:
            raise BundleError(
                f"version must be a semantic version like 1.2.0 or 1.2.0-rc.1, got {text!r}"
            )
        pre = tuple(match["pre"].split(".")) if match["pre"] else ()
        for ident in pre:
            if ident.isdigit() and len(ident) > 1 and ident.startswith("0"):
                raise BundleError(
                    f"version {text!r}: numeric pre-release part {ident!r} has a leading zero"
                )
        build = tuple(match["build"].split(".")) if match["build"] else ()
        return cls(int(match["major"]), int(match["minor"]), int(match["patch"]), pre, build)

    def _key(self) -> tuple[int, int, int, int, _PreKey]:
        # A release (no pre-release part) sorts after all of its pre-releases.
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, _pre_key(self.pre))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: SemVer) -> bool:
        return self._key() < other._key()

    def __le__(self, other: SemVer) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: SemVer) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: SemVer) -> bool:
        return self._key() >= other._key()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + ".".join(self.pre)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


VersionLike = Union[SemVer, str]


def as_semver(value: VersionLike) -> SemVer:
    return value if isinstance(value, SemVer) else SemVer.parse(value)
