"""One device id rule for flash.sh, broker/add-device.sh and the daemon config: a host
name label (RFC 1123, lower case) that is also an MQTT topic level."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import BROKER, DEPLOY, script

from edge_runtime.daemon.config import legacy_device_id, parse_config
from edge_runtime.errors import ConfigError

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmY5bF7v1v1qzZz9m8n5u0j6n2o3p4q5r6s7t8u9v0w ops\n"
#: Refused everywhere.
INVALID = ["", ".", "..", "pi 07", "pi/07", "pi+", "#", "a" * 65]
#: Taken by earlier versions but not host names: refused for new devices (flash.sh,
#: add-device.sh); a device already flashed with one keeps running, with a warning.
LEGACY = ["-x", "x-", "_x", "pi_07", "pi.07", "Pi-07", "a" * 64]
VALID = ["pi-07", "7", "a" * 63, "line3-cam-12"]


def flash(tmp_path: Path, device_id: str):  # type: ignore[no-untyped-def]
    device = tmp_path / "device"
    device.mkdir(exist_ok=True)
    (device / "config.toml").write_text('device_id = "pi-07"\n')
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    (wheels / "edge_runtime-0.1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + bytes(18))
    key = tmp_path / "id.pub"
    key.write_text(SSH_KEY)
    return script(
        DEPLOY / "flash.sh",
        "--image",
        tmp_path / "absent.img",
        "--target",
        tmp_path / "card.img",
        "--device-id",
        device_id,
        "--device-dir",
        device,
        "--wheel-dir",
        wheels,
        "--ssh-key",
        key,
        check=False,
    )


def daemon_problems(device_id: str) -> str:
    try:
        parse_config({"device_id": device_id, "state_dir": "/s", "model": {"path": "/m"}})
    except ConfigError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("device_id", INVALID + LEGACY, ids=repr)
def test_an_invalid_id_is_refused_everywhere_with_one_line(tmp_path: Path, device_id: str) -> None:
    done = flash(tmp_path, device_id)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith(("flash.sh: device id", "flash.sh: --device-id")), lines
    assert not (tmp_path / "card.img").exists()

    broker = tmp_path / "broker"
    broker.mkdir()
    added = script(BROKER / "add-device.sh", device_id, "--dir", broker, check=False)
    lines = added.stderr.strip().splitlines()
    assert added.returncode != 0 and len(lines) == 1, added.stderr
    assert lines[0].startswith("add-device.sh: device id"), lines
    assert not (broker / "devices").exists()

    if device_id in LEGACY:
        assert daemon_problems(device_id) == "" and legacy_device_id(device_id)
    else:
        assert "device_id:" in daemon_problems(device_id)


@pytest.mark.parametrize("device_id", VALID)
def test_a_valid_id_is_accepted_everywhere(tmp_path: Path, device_id: str) -> None:
    done = flash(tmp_path, device_id)  # stops later, at the absent image
    assert done.returncode != 0 and "--image" in done.stderr, done.stderr
    added = script(BROKER / "add-device.sh", device_id, "--dir", tmp_path, check=False)
    assert added.returncode != 0 and "no CA in" in added.stderr, added.stderr
    assert daemon_problems(device_id) == "" and not legacy_device_id(device_id)


@pytest.mark.parametrize("device_id", ["groups", "bundles"])
def test_ids_naming_fleet_topics_are_reserved_everywhere(tmp_path: Path, device_id: str) -> None:
    done = flash(tmp_path, device_id)
    assert done.returncode != 0 and f"device id '{device_id}' is reserved" in done.stderr
    added = script(BROKER / "add-device.sh", device_id, "--dir", tmp_path, check=False)
    assert added.returncode != 0 and f"device id '{device_id}' is reserved" in added.stderr
    assert "is reserved" in daemon_problems(device_id)
