"""The package as the README's Install section makes it: ``python -m build`` gives an sdist
and a wheel; each installs with its dependencies (pip resolves them) into a fresh venv, and
the installed ``edge-runtime predict`` names a digit with a committed model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IMAGES, MODELS, ROOT

pytestmark = pytest.mark.slow


def _run(*args: object, cwd: Path, timeout: float = 600) -> str:
    return _done(*args, cwd=cwd, timeout=timeout).stdout


def _done(*args: object, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.skip("pip install build (in the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    built = _done(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=out)
    # e.g. setuptools' "`project.license` as a TOML table is deprecated"
    assert "deprecated" not in built.stdout + built.stderr
    return out


def _fresh_install(folder: Path, requirement: str) -> Path:
    """A venv without the project's or any other site-packages; pip resolves everything."""
    venv = folder / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=folder)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", requirement, cwd=folder)
    return venv


def _predicts_a_digit(venv: Path, cwd: Path) -> None:
    where = _run(
        venv / "bin" / "python", "-c", "import edge_runtime; print(edge_runtime.__file__)", cwd=cwd
    )
    assert Path(where.strip()).is_relative_to(venv), where  # the installed copy, not the checkout
    out = _run(
        venv / "bin" / "edge-runtime",
        "predict",
        "--model",
        MODELS / "digits_v1.edgebundle",
        "--json",
        IMAGES / "digit_3.png",
        cwd=cwd,
    )
    assert json.loads(out)["top"][0]["label"] == "three"
    assert "edge-fleet" in _run(venv / "bin" / "edge-fleet", "--help", cwd=cwd)


def test_build_gives_an_sdist_and_a_wheel(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == [
        "edge_runtime-0.1.0-py3-none-any.whl",
        "edge_runtime-0.1.0.tar.gz",
    ]


@pytest.mark.parametrize("kind", ["whl", "tar.gz"])
def test_the_built_package_installs_and_predicts(dist: Path, tmp_path: Path, kind: str) -> None:
    (package,) = dist.glob(f"*.{kind}")
    venv = _fresh_install(tmp_path, f"edge-runtime[litert] @ {package.as_uri()}")
    _predicts_a_digit(venv, tmp_path)
