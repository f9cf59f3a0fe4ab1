"""flash.sh on a synthetic Raspberry Pi OS-like disk image (MBR, FAT boot, ext4 root),
read back with mtools, without mounting anything."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import (
    DEPLOY,
    loop_device,
    loop_devices_work,
    missing,
    mtools,
    script,
    sfdisk_image,
    sha256,
)

pytestmark = pytest.mark.skipif(
    bool(missing("sfdisk", "mkfs.vfat", "mkfs.ext4", "mcopy", "xz", "e2fsck")),
    reason="needs fdisk, dosfstools, e2fsprogs, mtools, xz-utils",
)

CMDLINE = (
    b"console=serial0,115200 console=tty1 "
    b"root=PARTUUID=0a1b2c3d-02 rootfstype=ext4 rootwait quiet\n"
)
FLASH = DEPLOY / "flash.sh"
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmY5bF7v1v1qzZz9m8n5u0j6n2o3p4q5r6s7t8u9v0w ops@fleet\n"
)
DEVICE_FILES = {
    "config.toml": b'device_id = "pi-07"\n',
    "trust.json": b"{}\n",
    "ca.crt": b"ca\n",
    "device.crt": b"crt\n",
    "device.key": b"key\n",
    "mqtt-password": b"pw\n",
}
EXPECTED = {
    "cmdline.txt",
    "user-data",
    "network-config",
    "meta-data",
    "edge-runtime/install.sh",
    "edge-runtime/firstboot.sh",
    "edge-runtime/edge-runtime.service",
    "edge-runtime/wheels/edge_runtime-0.1.0-py3-none-any.whl",
}
STAGE = "/var/lib/edge-runtime-firstboot/device"
ROOT_OFFSET = (8192 + 32 * 2048) * 512  # sfdisk_image's root partition


@pytest.fixture
def inputs(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    image = tmp_path / "raspios.img"
    offset = sfdisk_image(
        image, boot_files=[("cmdline.txt", CMDLINE), ("config.txt", b"arm_64bit=1\n")]
    )
    device = tmp_path / "device"
    device.mkdir()
    for name, data in DEVICE_FILES.items():
        (device / name).write_bytes(data)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "edge_runtime-0.1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + bytes(18))
    key = tmp_path / "id.pub"
    key.write_text(SSH_KEY)
    return {
        "image": image,
        "offset": offset,
        "device": device,
        "wheels": wheels,
        "key": key,
        "tmp": tmp_path,
    }


def flash(  # type: ignore[no-untyped-def]
    inputs: dict,  # type: ignore[type-arg]
    target: Path,
    *extra: object,
    image: object = None,
    device: Path | None = None,
    check: bool = True,
):
    return script(
        FLASH,
        "--image",
        image or inputs["image"],
        "--target",
        target,
        "--device-id",
        "pi-07",
        "--device-dir",
        device or inputs["device"],
        "--wheel-dir",
        inputs["wheels"],
        "--ssh-key",
        inputs["key"],
        "--wifi-ssid",
        "plant 'floor' 3",
        "--wifi-psk",
        "s3cret:psk",
        "--wifi-country",
        "DE",
        *extra,
        check=check,
    )


def boot_files(image: Path, offset: int) -> set:  # type: ignore[type-arg]
    listing = mtools("mdir", "-/", "-b", "-i", f"{image}@@{offset}", "::")
    return {line[len("::/") :] for line in listing.splitlines() if line and not line.endswith("/")}


def read(image: Path, offset: int, name: str) -> str:
    return mtools("mtype", "-i", f"{image}@@{offset}", f"::/{name}")


def one_line_refusal(done: subprocess.CompletedProcess) -> str:  # type: ignore[type-arg]
    """The single stderr line of a refused run."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stdout + done.stderr
    assert lines[0].startswith("flash.sh: "), lines
    return lines[0]


needs_loop = pytest.mark.skipif(not loop_devices_work(), reason="no loop devices here")


def debugfs(image: Path, request: str) -> str:
    """One read-only debugfs request on the image's root file system."""
    done = subprocess.run(
        ["debugfs", "-R", request, f"{image}?offset={ROOT_OFFSET}"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return done.stdout.decode("latin-1")


def root_files(image: Path, folder: str) -> dict[str, tuple[int, int, int]]:
    """Name -> (mode, uid, gid) of the entries of a folder of the root file system."""
    entries = {}
    for line in debugfs(image, f"ls -p {folder}").splitlines():
        parts = line.split("/")
        if len(parts) >= 6 and parts[5] not in ("", ".", ".."):
            entries[parts[5]] = (int(parts[2], 8), int(parts[3]), int(parts[4]))
    return entries


def check_root_clean(image: Path) -> None:
    # The ext4 root partition (after 8192 + 32 MiB of sectors) is a clean file system.
    done = subprocess.run(
        ["e2fsck", "-n", "-f", f"{image}?offset={ROOT_OFFSET}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_flash_to_image_file_leaves_exactly_the_first_boot_files(inputs: dict) -> None:  # type: ignore[type-arg]
    target = inputs["tmp"] / "card.img"
    flash(inputs, target)
    off = inputs["offset"]
    assert boot_files(target, off) == EXPECTED | {"config.txt"}
    # The device's files: on the root file system, root only; none on the FAT partition.
    assert root_files(target, STAGE) == {name: (0o100600, 0, 0) for name in DEVICE_FILES}
    assert root_files(target, "/var/lib")["edge-runtime-firstboot"] == (0o40700, 0, 0)
    for name, data in DEVICE_FILES.items():
        assert debugfs(target, f"cat {STAGE}/{name}").encode("latin-1") == data
    assert read(target, off, "edge-runtime/install.sh") == (DEPLOY / "install.sh").read_text()
    user_data = read(target, off, "user-data")
    assert user_data.startswith("#cloud-config\n")
    assert "hostname: 'pi-07'" in user_data
    assert f"      - '{SSH_KEY.strip()}'" in user_data
    assert "lock_passwd: true" in user_data and "ssh_pwauth: false" in user_data
    assert "[bash, /boot/firmware/edge-runtime/firstboot.sh]" in user_data
    network = read(target, off, "network-config")
    assert "'plant ''floor'' 3':" in network  # YAML single quotes, doubled inside
    assert "password: 's3cret:psk'" in network and "regulatory-domain: 'DE'" in network
    cmdline = read(target, off, "cmdline.txt")
    assert cmdline == CMDLINE.decode().strip() + " cfg80211.ieee80211_regdom=DE\n"
    assert "instance-id: edge-pi-07-" in read(target, off, "meta-data")
    assert target.stat().st_size == inputs["image"].stat().st_size
    check_root_clean(target)


def test_reflashing_in_place_replaces_files_and_keeps_one_regdom(inputs: dict) -> None:  # type: ignore[type-arg]
    target = inputs["tmp"] / "card.img"
    flash(inputs, target)
    (inputs["device"] / "device.key").unlink()  # a device folder with one file less
    flash(inputs, target, "--no-write")
    off = inputs["offset"]
    assert boot_files(target, off) == EXPECTED | {"config.txt"}
    assert set(root_files(target, STAGE)) == set(DEVICE_FILES) - {"device.key"}
    check_root_clean(target)
    assert read(target, off, "cmdline.txt").count("cfg80211.ieee80211_regdom=") == 1


def test_flash_from_xz_image(inputs: dict) -> None:  # type: ignore[type-arg]
    subprocess.run(["xz", "-k", "-0", "-T1", str(inputs["image"])], check=True, timeout=120)
    target = inputs["tmp"] / "card.img"
    target.write_bytes(b"\xff" * 4096)  # an older, larger image file: replaced whole
    os.truncate(target, 200 * 1024 * 1024)
    flash(inputs, target, image=f"{inputs['image']}.xz")
    assert target.stat().st_size == inputs["image"].stat().st_size
    assert boot_files(target, inputs["offset"]) == EXPECTED | {"config.txt"}
    check_root_clean(target)


def test_refuses_the_disk_holding_root(inputs: dict) -> None:  # type: ignore[type-arg]
    source = subprocess.run(
        ["findmnt", "-nvo", "SOURCE", "/"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not source.startswith("/dev/") or not Path(source).is_block_device():
        pytest.skip(f"/ is on {source!r}, not a block device")
    # No --image file: were the refusal to fail, flash.sh stops at the missing image
    # before writing anything, and the test fails on the message.
    done = flash(inputs, Path(source), image=inputs["tmp"] / "absent.img", check=False)
    assert done.returncode != 0
    assert "refusing" in done.stderr and (
        "mounted" in done.stderr or "system disk" in done.stderr
    ), done.stderr


def test_refuses_a_path_findmnt_reports_as_mounted(inputs: dict) -> None:  # type: ignore[type-arg]
    mounted = subprocess.run(
        ["findmnt", "-nro", "TARGET", "/proc"], capture_output=True, text=True, check=False
    ).stdout.strip()
    assert mounted == "/proc"
    done = flash(inputs, Path("/proc"), image=inputs["tmp"] / "absent.img", check=False)
    assert done.returncode != 0 and "refusing /proc: it is mounted" in done.stderr, done.stderr


def test_refuses_an_image_without_a_boot_partition(inputs: dict) -> None:  # type: ignore[type-arg]
    blank = inputs["tmp"] / "blank.img"
    blank.write_bytes(bytes(4 * 1024 * 1024))
    done = flash(inputs, inputs["tmp"] / "card.img", image=blank, check=False)
    assert done.returncode != 0 and "partition" in done.stderr


def test_bad_device_id_is_refused_before_anything_is_written(inputs: dict) -> None:  # type: ignore[type-arg]
    target = inputs["tmp"] / "card.img"
    done = script(
        FLASH,
        "--image",
        inputs["image"],
        "--target",
        target,
        "--device-id",
        "edge/#",
        "--device-dir",
        inputs["device"],
        "--wheel-dir",
        inputs["wheels"],
        "--ssh-key",
        inputs["key"],
        check=False,
    )
    assert done.returncode != 0 and "device id" in done.stderr
    assert not target.exists()
    assert os.path.getsize(inputs["image"]) > 0


def missing_dev_node(name: str, loop: Path | None) -> Path:
    if name == "partition":
        assert loop is not None
        return Path(f"{loop}p3")  # the image has two partitions: no such node
    return Path(name)


@pytest.mark.parametrize("name", ["/dev/sdzz", "/dev/mmcblk9", "partition"])
def test_a_missing_dev_node_is_refused_and_nothing_is_created(
    inputs: dict,  # type: ignore[type-arg]
    name: str,
) -> None:
    with contextlib.ExitStack() as stack:
        loop = None
        if name == "partition":
            if not loop_devices_work():
                pytest.skip("no loop devices here")
            card = inputs["tmp"] / "card.img"
            shutil.copy(inputs["image"], card)
            loop = stack.enter_context(loop_device(card))
        node = missing_dev_node(name, loop)
        if os.path.lexists(node):
            pytest.skip(f"{node} exists on this machine")
        try:
            done = flash(inputs, node, "--yes", check=False)
            line = one_line_refusal(done)
            assert line == f"flash.sh: refusing {node}: no such block device (card not inserted?)"
            assert not os.path.lexists(node)
        finally:
            if node.is_file() and not node.is_symlink():
                node.unlink()  # left by a flash.sh that wrote a file into /dev


def junk_image(kind: str, tmp: Path, good: Path) -> Path:
    """An image flash.sh must refuse before it writes a byte."""
    path = tmp / f"junk-{kind}.img"
    if kind == "random":
        path.write_bytes(os.urandom(4 * 1024 * 1024))
    elif kind == "text":
        path.write_text("Raspberry Pi OS, see https://www.raspberrypi.com/software/\n" * 100)
    elif kind == "no-fat":
        subprocess.run(["truncate", "-s", "16M", str(path)], check=True)
        subprocess.run(
            ["sfdisk", "-q", str(path)],
            input="label: dos\nstart=2048, type=83\n",
            text=True,
            check=True,
            capture_output=True,
        )
    elif kind == "no-cmdline":
        sfdisk_image(path, boot_files=[("config.txt", b"arm_64bit=1\n")])
    elif kind == "no-ext4-root":
        shutil.copy(good, path)
        with path.open("r+b") as f:  # the root file system's superblock gone
            f.seek((8192 + 32 * 2048) * 512)
            f.write(bytes(64 * 1024))
    elif kind == "ext4-feature-unknown":  # a root file system this host's debugfs cannot read
        shutil.copy(good, path)
        with path.open("r+b") as f:
            f.seek(ROOT_OFFSET + 1024 + 96)  # s_feature_incompat
            incompat = int.from_bytes(f.read(4), "little")
            f.seek(ROOT_OFFSET + 1024 + 96)
            f.write((incompat | 0x40000000).to_bytes(4, "little"))
    elif kind == "truncated-xz":
        subprocess.run(["xz", "-k", "-0", "-T1", str(good)], check=True, timeout=120)
        whole = Path(f"{good}.xz").read_bytes()
        path = tmp / "junk-truncated.img.xz"
        path.write_bytes(whole[: len(whole) // 2])  # a download cut short
    return path


JUNK = [
    "random",
    "text",
    "no-fat",
    "no-cmdline",
    "no-ext4-root",
    "ext4-feature-unknown",
    "truncated-xz",
]


@pytest.mark.parametrize("kind", JUNK)
def test_a_junk_image_leaves_an_existing_image_file_unchanged(
    inputs: dict,  # type: ignore[type-arg]
    kind: str,
) -> None:
    target = inputs["tmp"] / "card.img"
    flash(inputs, target)
    before = sha256(target)
    done = flash(
        inputs, target, image=junk_image(kind, inputs["tmp"], inputs["image"]), check=False
    )
    one_line_refusal(done)
    assert sha256(target) == before
    assert sorted(p.name for p in inputs["tmp"].iterdir() if p.name.startswith(".card")) == []


@needs_loop
@pytest.mark.parametrize("kind", JUNK)
def test_a_junk_image_leaves_a_card_unchanged(inputs: dict, kind: str) -> None:  # type: ignore[type-arg]
    backing = inputs["tmp"] / "card.bin"
    flash(inputs, backing)  # a card already flashed once
    before = sha256(backing)
    junk = junk_image(kind, inputs["tmp"], inputs["image"])
    with loop_device(backing) as card:
        done = flash(inputs, card, "--yes", image=junk, check=False)
    one_line_refusal(done)
    assert sha256(backing) == before


@needs_loop
def test_flash_to_a_block_device(inputs: dict) -> None:  # type: ignore[type-arg]
    backing = inputs["tmp"] / "card.bin"
    backing.write_bytes(b"\xa5" * 4096)
    os.truncate(backing, 128 * 1024 * 1024)  # a card larger than the image
    with loop_device(backing) as card:
        flash(inputs, card, "--yes")
    assert boot_files(backing, inputs["offset"]) == EXPECTED | {"config.txt"}
    check_root_clean(backing)
    with backing.open("rb") as f:
        f.seek(inputs["image"].stat().st_size)
        assert f.read(4096) == bytes(4096)  # past the image: kept as it was


@needs_loop
def test_an_image_larger_than_the_card_is_refused(inputs: dict) -> None:  # type: ignore[type-arg]
    backing = inputs["tmp"] / "card.bin"
    backing.write_bytes(b"\xa5" * (64 * 1024 * 1024))
    before = sha256(backing)
    with loop_device(backing) as card:
        line = one_line_refusal(flash(inputs, card, "--yes", check=False))
    assert "larger than" in line
    assert sha256(backing) == before


def device_secrets(folder: Path, device_id: str, size: int = 1) -> dict[str, bytes]:
    """A device folder as add-device.sh writes it, with secrets of its own (``size``
    times the usual length)."""
    folder.mkdir()
    secrets = {  # what is the device's own: the key's body, the password
        "device.key": base64.encodebytes(os.urandom(180 * size)),
        "mqtt-password": base64.b64encode(os.urandom(24 * size)),
    }
    (folder / "config.toml").write_text(f'device_id = "{device_id}"\n')
    (folder / "ca.crt").write_bytes(b"ca\n")
    (folder / "device.crt").write_bytes(device_id.encode() + b" crt\n")
    (folder / "device.key").write_bytes(
        b"-----BEGIN PRIVATE KEY-----\n" + secrets["device.key"] + b"-----END PRIVATE KEY-----\n"
    )
    (folder / "mqtt-password").write_bytes(secrets["mqtt-password"])
    return secrets


def traces(raw: bytes, secret: bytes, window: int = 16) -> list[int]:
    """Offsets into ``raw`` of any ``window`` bytes of ``secret``."""
    hits = []
    for start in range(0, max(1, len(secret) - window + 1), 4):
        at = raw.find(secret[start : start + window])
        if at >= 0:
            hits.append(at)
    return hits


def reprovision(inputs: dict, target: Path, device: Path, device_id: str, psk: str) -> None:  # type: ignore[type-arg]
    script(
        FLASH,
        "--target",
        target,
        "--no-write",
        "--device-id",
        device_id,
        "--device-dir",
        device,
        "--wheel-dir",
        inputs["wheels"],
        "--ssh-key",
        inputs["key"],
        "--wifi-ssid",
        "plant 3",
        "--wifi-psk",
        psk,
        "--wifi-country",
        "DE",
    )


@pytest.mark.parametrize("fat", ["FAT16", "FAT32"])
@pytest.mark.parametrize("flashed_by", ["this version", "an older version"])
def test_reprovisioning_leaves_nothing_of_the_previous_devices_secrets(
    inputs: dict,  # type: ignore[type-arg]
    flashed_by: str,
    fat: str,
) -> None:
    if fat == "FAT32":  # the real boot partition's; its root folder is a cluster chain
        inputs["image"].unlink()
        sfdisk_image(
            inputs["image"],
            size_mb=128,
            boot_mb=64,  # enough clusters for FAT32
            boot_files=[("cmdline.txt", CMDLINE)],
            fat32=True,
        )
        assert "FAT32" in mtools("minfo", "-i", f"{inputs['image']}@@{inputs['offset']}")
    target = inputs["tmp"] / "card.img"
    # Longer than the next device's: where its files take the same blocks, a tail is left.
    old = device_secrets(inputs["tmp"] / "pi-01", "pi-01", size=3)
    old["psk"] = base64.b64encode(os.urandom(18))
    if flashed_by == "this version":
        shutil.copy(inputs["image"], target)
        reprovision(inputs, target, inputs["tmp"] / "pi-01", "pi-01", old["psk"].decode())
    else:  # its device folder, with the secrets, on the FAT partition
        shutil.copy(inputs["image"], target)
        img = f"{target}@@{inputs['offset']}"
        mtools("mmd", "-i", img, "::/edge-runtime")
        mtools("mcopy", "-i", img, "-s", str(inputs["tmp"] / "pi-01"), "::/edge-runtime/device")
        network = inputs["tmp"] / "network-config"
        network.write_bytes(b"password: '" + old["psk"] + b"'\n")
        mtools("mcopy", "-i", img, str(network), "::/network-config")
    raw = target.read_bytes()
    assert all(traces(raw, secret) for secret in old.values())  # they were there

    new = device_secrets(inputs["tmp"] / "pi-02", "pi-02")
    # One file less: the next files do not all land on the blocks the old ones freed.
    (inputs["tmp"] / "pi-02" / "ca.crt").unlink()
    reprovision(inputs, target, inputs["tmp"] / "pi-02", "pi-02", "another-psk")
    raw = target.read_bytes()
    for name, secret in old.items():
        assert traces(raw, secret) == [], f"pi-01's {name} is still on the card"
    assert all(traces(raw, secret) for secret in new.values())


# Stands in for install.sh, whose pip install into an arm64 root test_pi_root.py runs: the
# part of it that concerns the device's files, copied into /etc/edge-runtime.
STUB_INSTALL = """#!/bin/bash
set -euo pipefail
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=$2; shift 2 ;;
        --device-dir) dir=$2; shift 2 ;;
        --wheel-dir) [ -d "$2" ]; shift 2 ;;
        *) exit 2 ;;
    esac
done
[ "${FAIL:-}" != yes ] || { echo "install failed"; exit 1; }
install -d -m 0750 "$root/etc/edge-runtime"
for file in "$dir"/*; do install -m 0640 "$file" "$root/etc/edge-runtime/"; done
"""


@contextlib.contextmanager
def mounted_root(card: Path) -> Iterator[Path]:
    """The card's ext4 root partition, mounted through a loop device of the test's own."""
    mnt = card.parent / "root"
    mnt.mkdir()
    with loop_device(card, offset=ROOT_OFFSET) as loop:
        subprocess.run(["mount", "-t", "ext4", str(loop), str(mnt)], check=True, timeout=60)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True, timeout=60)


def first_boot(inputs: dict, card: Path, *, fail: bool = False) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """firstboot.sh as cloud-init runs it, from the card's edge-runtime folder, on the
    card's root file system."""
    boot = inputs["tmp"] / "boot"
    boot.mkdir()
    mtools("mcopy", "-s", "-i", f"{card}@@{inputs['offset']}", "::/edge-runtime", str(boot))
    (boot / "edge-runtime" / "install.sh").write_text(STUB_INSTALL)
    with mounted_root(card) as root:
        return script(
            boot / "edge-runtime" / "firstboot.sh",
            "--root",
            root,
            check=False,
            env={**os.environ, "FAIL": "yes" if fail else "no"},
        )


needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or not loop_devices_work(), reason="needs root and loop devices"
)


@needs_mount
def test_after_first_boot_the_card_holds_each_secret_once_root_only(inputs: dict) -> None:  # type: ignore[type-arg]
    card = inputs["tmp"] / "card.img"
    secrets = device_secrets(inputs["tmp"] / "pi-07", "pi-07")
    flash(inputs, card, device=inputs["tmp"] / "pi-07")
    raw = card.read_bytes()
    for name, secret in secrets.items():  # never on the FAT partition
        assert traces(raw[:ROOT_OFFSET], secret) == [], f"{name} on the boot partition"

    done = first_boot(inputs, card)
    assert done.returncode == 0, done.stdout + done.stderr

    raw = card.read_bytes()
    for name, secret in secrets.items():
        # Only the installed copy, in /etc/edge-runtime: the staged one was overwritten.
        assert raw.count(secret) == 1, f"{name}: {raw.count(secret)} copies on the card"
        assert traces(raw[:ROOT_OFFSET], secret) == []
    assert root_files(card, "/var/lib").get("edge-runtime-firstboot") is None
    installed = root_files(card, "/etc/edge-runtime")
    assert installed["device.key"][0] == installed["mqtt-password"][0] == 0o100640
    assert boot_files(card, inputs["offset"]) == EXPECTED | {"config.txt"}
    assert "first boot: done" in debugfs(card, "cat /var/log/edge-runtime-firstboot.log")
    check_root_clean(card)


@needs_mount
def test_a_failed_first_boot_leaves_the_secrets_root_only_off_the_boot_partition(
    inputs: dict,  # type: ignore[type-arg]
) -> None:
    card = inputs["tmp"] / "card.img"
    secrets = device_secrets(inputs["tmp"] / "pi-07", "pi-07")
    flash(inputs, card, device=inputs["tmp"] / "pi-07")
    done = first_boot(inputs, card, fail=True)
    assert done.returncode != 0
    raw = card.read_bytes()
    for secret in secrets.values():
        assert raw.count(secret) == 1 and traces(raw[:ROOT_OFFSET], secret) == []
    assert root_files(card, "/var/lib")["edge-runtime-firstboot"] == (0o40700, 0, 0)
    assert root_files(card, STAGE)["device.key"] == (0o100600, 0, 0)
    assert "install failed" in debugfs(card, "cat /var/log/edge-runtime-firstboot.log")


@needs_mount
def test_no_write_refuses_a_card_that_has_booted(inputs: dict) -> None:  # type: ignore[type-arg]
    card = inputs["tmp"] / "card.img"
    flash(inputs, card)
    assert first_boot(inputs, card).returncode == 0
    before = sha256(card)
    line = one_line_refusal(flash(inputs, card, "--no-write", check=False))
    assert "has booted as a device" in line and "write the image again" in line
    assert sha256(card) == before


@needs_loop
def test_a_partition_of_a_card_is_refused(inputs: dict) -> None:  # type: ignore[type-arg]
    backing = inputs["tmp"] / "card.bin"  # one partition, larger than the image
    subprocess.run(["truncate", "-s", "160M", str(backing)], check=True)
    subprocess.run(
        ["sfdisk", "-q", str(backing)],
        input="label: dos\nstart=2048, type=c\n",
        text=True,
        check=True,
        capture_output=True,
    )
    before = sha256(backing)
    with loop_device(backing, partitions=True) as card:
        partition = Path(f"{card}p1")
        for _ in range(50):  # the kernel adds the node a moment after the scan
            if partition.is_block_device():
                break
            time.sleep(0.1)
        else:
            pytest.skip("no partition nodes for loop devices here")
        line = one_line_refusal(flash(inputs, partition, "--yes", check=False))
    assert (
        line == f"flash.sh: refusing {partition}: it is a partition; give the whole card ({card})"
    )
    assert sha256(backing) == before
