"""``tools/setup.sh``: the apt mirror is taken from the machine, not named by the project,
and a second run is quiet."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MIRROR = ROOT / "tools" / "debian_mirror.sh"

#: Package registries and mirrors that a script could be tempted to name.
KNOWN_HOSTS = re.compile(
    r"(deb|security|ftp\.[a-z]+|snapshot|archive)\.debian\.org|archive\.ubuntu\.com"
    r"|raspbian\.raspberrypi\.(org|com)|archive\.raspberrypi\.(org|com)|piwheels\.org"
    r"|pypi\.org|pythonhosted\.org|download\.pytorch\.org",
    re.IGNORECASE,
)
#: Any URL whose host is not this machine or a reserved example domain.
URL_HOST = re.compile(r"\b(?:https?|ftp)://([A-Za-z0-9.-]+)")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
#: Files where any such URL is a host the project would depend on (Python files hold URLs
#: as test data too; the hosts above are refused there as everywhere).
SCRIPT_SUFFIXES = {".sh", ".toml", ".service", ".conf", ".acl", ".cfg"}


def _mirror(*files: Path, suite: str = "bookworm") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    return subprocess.run(
        ["sh", str(MIRROR), suite, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    sources = _write(
        tmp_path,
        "sources.list",
        "# deb http://old.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/debian/"
        " bookworm main contrib\n"
        "deb http://mirror.invalid/debian-security bookworm-security main\n",
    )
    done = _mirror(sources)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "http://mirror.invalid/debian\n"
    security = _mirror(sources, suite="bookworm-security")
    assert security.stdout == "http://mirror.invalid/debian-security\n"


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    sources = _write(
        tmp_path,
        "debian.sources",
        "Types: deb\n"
        "URIs: http://disabled.invalid/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Enabled: no\n"
        "\n"
        "Types: deb-src\n"
        "URIs: http://src.invalid/debian\n"
        "Suites: bookworm\n"
        "\n"
        "Types: deb deb-src\n"
        "# a comment inside a stanza\n"
        "URIs: https://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: https://mirror.invalid/debian-security\n"
        "Suites: bookworm-security\n",
    )
    done = _mirror(sources)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "https://mirror.invalid/debian\n"


def test_mirror_searches_every_file_and_says_when_there_is_none(tmp_path: Path) -> None:
    other = _write(tmp_path, "other.list", "deb http://other.invalid/apt stable main\n")
    debian = _write(
        tmp_path, "debian.sources", "Types: deb\nURIs: http://m.invalid/debian\nSuites: bookworm\n"
    )
    assert _mirror(tmp_path / "absent.list", other, debian).stdout == "http://m.invalid/debian\n"
    none = _mirror(other, suite="trixie")
    assert none.returncode == 1 and none.stdout == ""
    assert "no Debian archive for suite trixie" in none.stderr and "DEBIAN_MIRROR" in none.stderr


def test_debian_mirror_variable_wins(tmp_path: Path) -> None:
    other = _write(tmp_path, "other.list", "deb http://other.invalid/debian bookworm main\n")
    done = subprocess.run(
        ["sh", str(MIRROR), "bookworm", str(other)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "DEBIAN_MIRROR": "http://chosen.invalid/debian"},
    )
    assert done.stdout == "http://chosen.invalid/debian\n"


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, cwd=ROOT, timeout=30, check=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def test_no_registry_or_mirror_host_is_named() -> None:
    """The project takes package mirrors and indexes from the machine's own apt and pip
    configuration; it names none of them (in scripts, or anywhere else)."""
    named: list[str] = []
    for path in _tracked_files():
        if not path.is_file() or "fixtures" in path.parts:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(ROOT).as_posix()
        named += [f"{rel}: {m.group(0)}" for m in KNOWN_HOSTS.finditer(text)]
        if path.suffix in SCRIPT_SUFFIXES or path.name.endswith(".sh"):
            for m in URL_HOST.finditer(text):
                host = m.group(1).rstrip(".")
                if host in LOCAL_HOSTS or host.endswith((".invalid", "example.com")):
                    continue
                named.append(f"{rel}: {m.group(0)}")
    assert named == []


@pytest.mark.slow
def test_a_second_setup_run_prints_one_line() -> None:
    """Set-up installs only what changed; with nothing changed it says so in one line (the
    first run here may have work to do, e.g. after pyproject.toml changed)."""
    first = subprocess.run(
        ["bash", "tools/setup.sh"], capture_output=True, text=True, timeout=1800, cwd=ROOT
    )
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(
        ["bash", "tools/setup.sh"], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stderr == ""
    assert second.stdout.count("\n") == 1 and second.stdout.startswith("setup: up to date")
