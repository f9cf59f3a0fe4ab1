"""Static checks of the shipped deployment files: shellcheck, systemd-analyze, and the
installer's --dry-run."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import DEPLOY, ROOT, script

SCRIPTS = sorted(DEPLOY.rglob("*.sh")) + sorted((ROOT / "tests" / "deploy").glob("*.sh"))
UNIT = DEPLOY / "edge-runtime.service"


def test_every_expected_script_is_shipped() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*.sh")}
    assert {
        "install.sh",
        "flash.sh",
        "firstboot.sh",
        "broker/make-ca.sh",
        "broker/add-device.sh",
    } <= names


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="apt-get install shellcheck")
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck_clean(path: Path) -> None:
    done = subprocess.run(
        ["shellcheck", "--severity=style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _verify(unit_text: str, tmp_path: Path) -> str:
    """systemd-analyze verify on a copy whose ExecStart points at a stub executable.
    Returns stderr: verify exits 0 on some warnings (unknown keys, bad values)."""
    stub = tmp_path / "edge-runtime"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "edge-runtime.service"
    unit.write_text(unit_text.replace("/opt/edge-runtime/venv/bin/edge-runtime", str(stub)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    return (done.stderr + done.stdout).strip() + (
        "" if done.returncode == 0 else f"\nexit {done.returncode}"
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="apt-get install systemd")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    assert _verify(UNIT.read_text(), tmp_path) == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="apt-get install systemd")
def test_systemd_analyze_check_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = (
        UNIT.read_text()
        .replace("Type=notify", "Type=notyfy")
        .replace("ProtectHome=yes", "ProtectHom=yes")
    )
    out = _verify(broken, tmp_path)
    assert "notyfy" in out and "ProtectHom" in out


def test_unit_is_hardened_as_specified() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    expected = {
        "Type": "notify",
        "Restart": "on-failure",
        "User": "edge-runtime",
        "StateDirectory": "edge-runtime",
        "RuntimeDirectory": "edge-runtime",  # the liveness file, in memory
        "ConfigurationDirectory": "edge-runtime",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "DevicePolicy": "closed",
        "SystemCallFilter": "@system-service",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "ExecStart": (
            "/opt/edge-runtime/venv/bin/edge-runtime run --config /etc/edge-runtime/config.toml"
        ),
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert int(service["WatchdogSec"]) > 0
    assert "plugdev" in service["SupplementaryGroups"].split()
    assert "MemoryDenyWriteExecute" not in service  # XNNPACK / libedgetpu need W+X mappings
    unit = parser["Unit"]
    assert int(unit["StartLimitBurst"]) >= 1 and int(unit["StartLimitIntervalSec"]) > 0
    # DeviceAllow appears twice: configparser keeps the last; read both from the text.
    allows = [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith("DeviceAllow=")
    ]
    assert allows == ["char-usb_device rw", "/dev/apex_0 rw", "/dev/vcio rw"]


def test_install_dry_run_prints_actions_and_changes_nothing(tmp_path: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs a system python3")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "edge_runtime-0.1.0-py3-none-any.whl").write_bytes(b"")
    before = {
        p: p.exists()
        for p in (
            Path("/opt/edge-runtime"),
            Path("/etc/edge-runtime"),
            Path("/etc/systemd/system/edge-runtime.service"),
        )
    }
    done = script(
        DEPLOY / "install.sh",
        "--dry-run",
        "--wheel-dir",
        tmp_path / "wheels",
        env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        check=False,
    )
    if "python3-venv is missing" in done.stderr:
        pytest.skip("the system python3 has no venv module")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend extra [litert]" in out  # x86-64 and arm64 test machines
    for action in (
        "python3 -m venv /opt/edge-runtime/venv",
        "--no-index",
        "edge_runtime-0.1.0-py3-none-any.whl[litert]",
        "71-edge-runtime-coral.rules",
        "/etc/systemd/system/edge-runtime.service",
    ):
        assert action in out, action
    assert before == {p: p.exists() for p in before}


def test_install_refuses_unknown_arguments() -> None:
    done = script(DEPLOY / "install.sh", "--dry-run", "--frobnicate", check=False)
    assert done.returncode != 0 and "unknown argument: --frobnicate" in done.stderr
