"""First boot into a Debian arm64 root that stands in for a Raspberry Pi (debootstrap,
qemu user emulation through binfmt_misc): flash.sh on a synthetic card with wheels made
by fetch-wheels.sh, the card's first-boot files put where the Pi has them, firstboot.sh
(install.sh offline from those wheels), then ``edge-runtime predict`` on the committed
digits model inside that root.

The root is built once by pi_root.sh (about 4 minutes) and cached as a tarball in
EDGE_TEST_CACHE, else $XDG_CACHE_HOME/edge-runtime-test, else /var/cache/edge-runtime-test.
Needs root (chroot, mounts), debootstrap and qemu-user-static 10 (bookworm-backports).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from deploy_helpers import DEPLOY, ROOT, missing, mtools, script, sfdisk_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, bind mounts)"),
    pytest.mark.skipif(
        bool(missing("debootstrap", "qemu-aarch64-static", "chroot", "tar")),
        reason="needs debootstrap and qemu-user-static (bookworm-backports)",
    ),
    pytest.mark.skipif(
        bool(missing("sfdisk", "mkfs.vfat", "mkfs.ext4", "mcopy", "debugfs")),
        reason="needs fdisk, dosfstools, e2fsprogs, mtools",
    ),
]

MODEL = ROOT / "tests" / "fixtures" / "models" / "digits_int8.tflite"
IMAGE = ROOT / "tests" / "fixtures" / "images" / "digit_3.png"


def cache_dir() -> Path:
    if os.environ.get("EDGE_TEST_CACHE"):
        return Path(os.environ["EDGE_TEST_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "edge-runtime-test"
    return Path("/var/cache/edge-runtime-test")


def project_wheel(out: Path) -> Path:
    """The project wheel, built from a copy of the source tree (no build/ in the checkout)."""
    src = out / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "*.egg-info", "__pycache__", "tests", "benchmarks", ".ci"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out / "project"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next((out / "project").glob("edge_runtime-*.whl"))


def flash_and_unpack(top: Path, root: Path, wheels: Path, device: Path) -> Path:
    """flash.sh onto a synthetic card, then its first-boot files where the Pi has them:
    the boot partition's edge-runtime/ (returned) and the root file system's staged device
    folder, copied into ``root`` with their modes."""
    boot_mb = 192  # room for the wheels
    image = top / "raspios.img"
    offset = sfdisk_image(
        image,
        size_mb=boot_mb + 64,
        boot_mb=boot_mb,
        boot_files=[("cmdline.txt", b"console=tty1 root=PARTUUID=0a1b2c3d-02 rootwait\n")],
    )
    key = top / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmY5bF7v1v1qzZz9m8n5u0j6n2o3p4 ops\n")
    card = top / "card.img"
    script(
        DEPLOY / "flash.sh",
        "--image",
        image,
        "--target",
        card,
        "--device-id",
        "pi-emu",
        "--device-dir",
        device,
        "--wheel-dir",
        wheels,
        "--ssh-key",
        key,
        timeout=600,
    )
    image.unlink()
    boot = top / "boot"
    boot.mkdir()
    mtools("mcopy", "-s", "-i", f"{card}@@{offset}", "::/edge-runtime", str(boot))
    root_offset = offset + boot_mb * 1024 * 1024
    subprocess.run(
        [
            "debugfs",
            "-R",
            f"rdump /var/lib/edge-runtime-firstboot {root / 'var/lib'}",
            f"{card}?offset={root_offset}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    card.unlink()
    return boot / "edge-runtime"


@pytest.fixture
def pi_root():  # type: ignore[no-untyped-def]
    tarball = subprocess.run(
        ["sh", str(ROOT / "tests" / "deploy" / "pi_root.sh"), str(cache_dir())],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert tarball.returncode == 0, tarball.stderr
    top = Path(tempfile.mkdtemp(prefix="edge-pi-root-"))
    root = top / "root"
    root.mkdir()
    mounted: list = []  # type: ignore[type-arg]
    try:
        subprocess.run(
            ["tar", "-C", str(root), "-xf", tarball.stdout.strip()], check=True, timeout=300
        )
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        for args, where in (
            (["--bind", "/dev"], "dev"),
            (["-t", "proc", "proc"], "proc"),
            (["-t", "sysfs", "sysfs"], "sys"),
        ):
            subprocess.run(["mount", *args, str(root / where)], check=True, timeout=30)
            mounted.append(root / where)
        yield top, root
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)
        if not any(os.path.ismount(p) for p in mounted):
            shutil.rmtree(top, ignore_errors=True)


def test_install_into_arm64_root_and_predict(pi_root) -> None:  # type: ignore[no-untyped-def]
    top, root = pi_root
    wheels = top / "wheels"
    started = time.monotonic()
    script(
        DEPLOY / "fetch-wheels.sh",
        wheels,
        "--project-wheel",
        project_wheel(top),
        "--arch",
        "aarch64",
        "--python",
        "3.11",
        env={**os.environ, "PYTHON": sys.executable},
        timeout=600,
    )
    device = top / "device"
    device.mkdir()
    (device / "config.toml").write_text('device_id = "pi-emu"\n')
    (device / "trust.json").write_text("{}\n")
    (device / "device.key").write_text("not a real key\n")
    (device / "mqtt-password").write_text("not a real password\n")

    firstboot = flash_and_unpack(top, root, wheels, device) / "firstboot.sh"
    stage = root / "var/lib/edge-runtime-firstboot"
    assert stage.stat().st_mode & 0o777 == 0o700
    assert (stage / "device/device.key").stat().st_mode & 0o777 == 0o600
    done = script(firstboot, "--root", root, timeout=1200, check=False)
    install_s = time.monotonic() - started
    log = (root / "var/log/edge-runtime-firstboot.log").read_text()
    assert done.returncode == 0 and "edge-runtime first boot: done" in log, log[-4000:]
    assert "architecture arm64" in log and "backend extra [litert]" in log
    assert "--no-index" in log  # offline: only the fetched wheels
    assert "systemd is not running here" in log
    assert not stage.exists()  # the staged credentials: overwritten and deleted
    key = root / "etc/edge-runtime/device.key"
    assert key.read_text() == "not a real key\n" and key.stat().st_mode & 0o777 == 0o640
    assert (root / "etc/systemd/system/multi-user.target.wants/edge-runtime.service").is_symlink()
    rules = (root / "etc/udev/rules.d/71-edge-runtime-coral.rules").read_text()
    assert 'ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a"' in rules
    assert (
        'ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302"' in rules
        and 'SUBSYSTEM=="apex"' in rules
    )
    passwd = (root / "etc/passwd").read_text()
    assert (
        "\nedge-runtime:" in passwd
        and "/usr/sbin/nologin" in passwd.split("\nedge-runtime:")[1].split("\n")[0]
    )
    assert (root / "etc/edge-runtime/config.toml").read_text() == 'device_id = "pi-emu"\n'

    # Idempotent, and never overwrites a device's config.
    (root / "etc/edge-runtime/config.toml").write_text('device_id = "edited"\n')
    again = script(
        DEPLOY / "install.sh",
        "--root",
        root,
        "--wheel-dir",
        wheels,
        "--device-dir",
        device,
        timeout=1200,
    )
    assert "kept existing /etc/edge-runtime/config.toml" in again.stdout
    assert (
        "system user edge-runtime exists" in again.stdout
        and "venv /opt/edge-runtime/venv exists" in again.stdout
    )
    assert (root / "etc/edge-runtime/config.toml").read_text() == 'device_id = "edited"\n'

    shutil.copy(MODEL, root / "tmp" / MODEL.name)
    shutil.copy(IMAGE, root / "tmp" / IMAGE.name)
    predict_started = time.monotonic()
    run = subprocess.run(
        [
            "chroot",
            str(root),
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "HOME=/root",
            "/opt/edge-runtime/venv/bin/edge-runtime",
            "predict",
            "--model",
            f"/tmp/{MODEL.name}",
            "--json",
            f"/tmp/{IMAGE.name}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["top"][0]["index"] == 3 and result["top"][0]["score"] > 0.5
    machine = subprocess.run(
        ["chroot", str(root), "uname", "-m"], capture_output=True, text=True, check=True
    )
    assert machine.stdout.strip() == "aarch64"
    print(
        f"\ninstall {install_s:.0f}s, "
        f"predict {time.monotonic() - predict_started:.0f}s under emulation"
    )

    # Uninstall keeps config and state, removes the venv, unit and rules.
    gone = script(DEPLOY / "install.sh", "--root", root, "--uninstall", timeout=300)
    assert "kept /etc/edge-runtime" in gone.stdout
    assert not (root / "opt/edge-runtime").exists()
    assert not (root / "etc/systemd/system/edge-runtime.service").exists()
    assert not (root / "etc/udev/rules.d/71-edge-runtime-coral.rules").exists()
    assert (root / "etc/edge-runtime/config.toml").exists()
