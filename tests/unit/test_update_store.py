"""The version store: atomic activation, previous version kept, rollback, pruning, and
what an interrupted switch leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_runtime.errors import UpdateError
from edge_runtime.update.store import ModelStore, NoPreviousVersion, Versions


def _bundle(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"{text}.src"
    path.write_bytes(text.encode() * 100)
    return path


def test_activate_keeps_the_previous_version_and_rolls_back(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "state")
    v1 = store.add(_bundle(tmp_path, "one"), "digits", "1.0.0")
    assert store.versions() == Versions(None, None)
    assert store.activate(v1) == Versions("digits-1.0.0.edgebundle", None)
    assert store.current.read_bytes() == b"one" * 100
    v2 = store.add(_bundle(tmp_path, "two"), "digits", "2.0.0")
    assert store.activate(v2) == Versions("digits-2.0.0.edgebundle", "digits-1.0.0.edgebundle")
    assert store.current.read_bytes() == b"two" * 100
    assert store.rollback() == Versions("digits-1.0.0.edgebundle", "digits-2.0.0.edgebundle")
    assert store.current.read_bytes() == b"one" * 100


def test_rollback_without_a_previous_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "state")
    with pytest.raises(NoPreviousVersion):
        store.rollback()
    store.activate(store.add(_bundle(tmp_path, "one"), "digits", "1.0.0"))
    with pytest.raises(NoPreviousVersion, match="no previous"):
        store.rollback()
    assert store.current.read_bytes() == b"one" * 100


def test_only_stored_versions_can_be_activated(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "state")
    with pytest.raises(UpdateError, match="not a stored version"):
        store.activate(_bundle(tmp_path, "outside"))
    assert store.versions() == Versions(None, None)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_old_versions_beyond_keep_are_removed(tmp_path: Path, keep: int) -> None:
    store = ModelStore(tmp_path / "state", keep=keep)
    for n in range(1, 6):
        stored = store.add(_bundle(tmp_path, f"v{n}"), "digits", f"{n}.0.0")
        os.utime(stored, (n * 1000, n * 1000))  # distinct ages, oldest first
        store.activate(stored)
    files = sorted(p.name for p in store.folder.glob("*.edgebundle"))
    expected = [f"digits-{n}.0.0.edgebundle" for n in range(5 - keep, 6)]
    assert files == expected
    assert store.versions() == Versions("digits-5.0.0.edgebundle", "digits-4.0.0.edgebundle")


def test_interrupted_switch_leaves_the_old_version_active(tmp_path: Path) -> None:
    """A power cut after the new link was made but before it replaced ``current``."""
    store = ModelStore(tmp_path / "state")
    store.activate(store.add(_bundle(tmp_path, "one"), "digits", "1.0.0"))
    store.add(_bundle(tmp_path, "two"), "digits", "2.0.0")
    os.symlink("digits-2.0.0.edgebundle", store.folder / ".current.new")
    (store.folder / "digits-3.0.0.edgebundle.part").write_bytes(b"half a copy")
    reopened = ModelStore(tmp_path / "state")
    assert reopened.versions().active == "digits-1.0.0.edgebundle"
    assert reopened.current.read_bytes() == b"one" * 100
    assert sorted(p.name for p in reopened.folder.iterdir()) == [
        "current",
        "digits-1.0.0.edgebundle",
        "digits-2.0.0.edgebundle",
    ]


def test_deactivate_leaves_no_active_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "state")
    store.activate(store.add(_bundle(tmp_path, "one"), "digits", "1.0.0"))
    store.deactivate()
    assert store.versions().active is None and not store.current.exists()
    store.deactivate()  # twice is fine
