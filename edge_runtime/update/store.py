"""Model versions side by side in the state folder, one of them active.

    <state_dir>/models/digits-1.2.0.edgebundle
    <state_dir>/models/digits-1.3.0.edgebundle
    <state_dir>/models/current  -> digits-1.3.0.edgebundle
    <state_dir>/models/previous -> digits-1.2.0.edgebundle

``current`` is the path the daemon's config names (``model.path``). Switching it is one
``rename`` of a freshly made symlink over the old one, followed by an fsync of the
folder, so a power cut at any moment leaves either the old or the new version active,
never a mix and never none.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.bundle.atomic import fsync_dir
from edge_runtime.errors import UpdateError

CURRENT = "current"
PREVIOUS = "previous"
SUFFIX = ".edgebundle"


def private_folder(folder: Path) -> Path:
    """Create ``folder`` (and its parents) and make it 0700: bundles and partial
    downloads are the device's alone."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


class NoPreviousVersion(UpdateError):
    reason = "no_previous"


@dataclass(frozen=True)
class Versions:
    active: str | None  # file name of the active bundle
    previous: str | None


class ModelStore:
    """The ``models`` folder of a device's state folder."""

    def __init__(self, state_dir: Path, *, keep: int = 2) -> None:
        """``keep``: how many versions besides the active one stay on disk (at least 1,
        so that there is always a version to roll back to)."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.folder = Path(state_dir) / "models"
        self.keep = keep
        private_folder(self.folder)
        self._clean_leftovers()

    @property
    def current(self) -> Path:
        return self.folder / CURRENT

    def versions(self) -> Versions:
        return Versions(self._target(CURRENT), self._target(PREVIOUS))

    def add(self, bundle: Path, name: str, version: str) -> Path:
        """Copy a verified bundle in as ``NAME-VERSION.edgebundle`` (0600, fsynced); not
        active yet."""
        final = self.folder / f"{name}-{version}{SUFFIX}"
        part = final.with_name(final.name + ".part")
        part.unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with open(bundle, "rb") as source, os.fdopen(os.open(part, flags, 0o600), "wb") as out:
            shutil.copyfileobj(source, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, final)
        fsync_dir(self.folder)
        return final

    def activate(self, stored: Path) -> Versions:
        """Make ``stored`` (a file in this folder) the active version; the one it replaces
        becomes ``previous``. Older versions beyond ``keep`` are removed."""
        stored = Path(stored)
        if stored.parent.resolve() != self.folder.resolve() or not stored.is_file():
            raise UpdateError(f"{stored} is not a stored version in {self.folder}")
        old = self._target(CURRENT)
        if old == stored.name:
            return self.versions()
        self._point(CURRENT, stored.name)
        if old is not None:
            self._point(PREVIOUS, old)
        self._prune()
        return self.versions()

    def rollback(self) -> Versions:
        """Make ``previous`` active again (and the failed version ``previous``).

        Raises:
            NoPreviousVersion: there is nothing to go back to.
        """
        before = self.versions()
        if before.previous is None or not (self.folder / before.previous).is_file():
            raise NoPreviousVersion("no previous model version to roll back to")
        self._point(CURRENT, before.previous)
        if before.active is not None:
            self._point(PREVIOUS, before.active)
        return self.versions()

    def deactivate(self) -> None:
        """Remove ``current`` (the daemon then starts from its configured model)."""
        self.current.unlink(missing_ok=True)
        fsync_dir(self.folder)

    # -- internals ---------------------------------------------------------------------
    def _target(self, link: str) -> str | None:
        path = self.folder / link
        if not path.is_symlink():
            return None
        return os.readlink(path)

    def _point(self, link: str, target: str) -> None:
        temp = self.folder / f".{link}.new"
        if temp.is_symlink() or temp.exists():
            temp.unlink()
        os.symlink(target, temp)
        os.replace(temp, self.folder / link)
        fsync_dir(self.folder)

    def _prune(self) -> None:
        """Keep the active version and ``keep`` others: ``previous`` first, then the newest."""
        active, previous = self._target(CURRENT), self._target(PREVIOUS)
        others = sorted(
            (p for p in self.folder.glob(f"*{SUFFIX}") if p.name != active),
            key=lambda p: (p.name == previous, p.stat().st_mtime),
            reverse=True,
        )
        for path in others[self.keep :]:
            path.unlink()
        fsync_dir(self.folder)

    def _clean_leftovers(self) -> None:
        """Remove what an interrupted ``add`` or ``_point`` left (never a live link)."""
        for path in self.folder.iterdir():
            if path.name.endswith(".part") or path.name in (f".{CURRENT}.new", f".{PREVIOUS}.new"):
                path.unlink()
