"""The model served at start: models/current, the stored versions newest first, then
model.path; the first that loads wins, a fallback from current is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_runtime.daemon.startmodel import candidates, load_first
from edge_runtime.errors import ModelError


def stored(folder: Path, name: str, mtime: float) -> Path:
    path = folder / name
    path.write_bytes(name.encode())
    os.utime(path, (mtime, mtime))
    return path


def loader(good: set[str]):  # type: ignore[no-untyped-def]
    def load(path: Path) -> str:
        if path.resolve().name not in good or not path.exists():
            raise ModelError(f"{path.name} is not a model")
        return path.resolve().name

    return load


def test_order_current_then_newest_stored_then_model_path(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    stored(folder, "m-1.0.0.edgebundle", 100)
    stored(folder, "m-1.2.0.edgebundle", 300)
    stored(folder, "m-1.1.0.edgebundle", 200)
    os.symlink("m-1.1.0.edgebundle", folder / "current")
    labels = [c.label for c in candidates(tmp_path, tmp_path / "cfg.tflite")]
    assert labels == [
        "models/current (-> m-1.1.0.edgebundle)",
        "stored version m-1.2.0.edgebundle",
        "stored version m-1.0.0.edgebundle",
        f"model.path ({tmp_path / 'cfg.tflite'})",
    ]


def test_no_current_serves_model_path_without_a_fallback(tmp_path):
    (tmp_path / "cfg.tflite").write_bytes(b"x")
    engine, chosen, fallback = load_first(
        candidates(tmp_path, tmp_path / "cfg.tflite"), loader({"cfg.tflite"})
    )
    assert engine == "cfg.tflite" and fallback is None


def test_a_current_that_does_not_load_falls_back_and_says_why(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    stored(folder, "m-1.0.0.edgebundle", 100)
    stored(folder, "m-1.1.0.edgebundle", 200)
    os.symlink("m-1.1.0.edgebundle", folder / "current")
    engine, chosen, fallback = load_first(
        candidates(tmp_path, tmp_path / "cfg.tflite"), loader({"m-1.0.0.edgebundle"})
    )
    assert engine == "m-1.0.0.edgebundle"
    assert fallback is not None and fallback.why == "current is not a model"
    assert fallback.serving == chosen


def test_nothing_loads_is_one_error_naming_each(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    os.symlink("gone.edgebundle", folder / "current")
    with pytest.raises(ModelError) as info:
        load_first(candidates(tmp_path, tmp_path / "cfg.tflite"), loader(set()))
    text = str(info.value)
    assert text.startswith("no model can be served: models/current (-> gone.edgebundle)")
    assert "cfg.tflite" in text and "\n" not in text
