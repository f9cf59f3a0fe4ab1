"""Helpers for the deployment tests: paths, running the shipped scripts, an MQTT 5 client
that reports the broker's reason codes, and a mosquitto run with the shipped config."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.mosquitto import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy_scripts"
BROKER = DEPLOY / "broker"


def script(
    path: Path,
    *args: object,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run a shipped shell script with bash; text output."""
    done = subprocess.run(
        ["bash", str(path), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{path.name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


class ShippedBroker:
    """mosquitto run with the config make-ca.sh wrote, listeners moved to free local ports."""

    def __init__(self, broker_dir: Path) -> None:
        self.dir = broker_dir
        self.cert_port = free_port()
        self.password_port = free_port()
        self.operator_port = free_port()
        text = (broker_dir / "mosquitto.conf").read_text()
        for shipped, port in (
            (8883, self.cert_port),
            (8884, self.password_port),
            (8885, self.operator_port),
        ):
            text, n = re.subn(rf"(?m)^listener {shipped}$", f"listener {port} 127.0.0.1", text)
            assert n == 1, f"shipped mosquitto.conf no longer has listener {shipped}"
        self.log = broker_dir / "mosquitto.log"
        self.config = broker_dir / "mosquitto.test.conf"
        self.config.write_text(text)
        self._log_file: BinaryIO | None = None
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    def __enter__(self) -> ShippedBroker:
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stdout=self._log_file, stderr=subprocess.STDOUT
        )
        try:
            for port in (self.cert_port, self.password_port, self.operator_port):
                wait_port(port)
        except TimeoutError:
            self.__exit__()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start with the shipped config:\n{log}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Client:
    """A paho MQTT 5 client over TLS; keeps messages and the reason code of each publish."""

    __test__ = False

    def __init__(
        self,
        port: int,
        ca: Path,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        client_id: str | None = None,
        session_expiry: int = 0,
    ) -> None:
        """``session_expiry`` > 0: resume (clean start off) and keep the session that long."""
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"deploy-test-{time.monotonic_ns()}",
            protocol=paho.MQTTv5,
        )
        self.client.tls_set(
            ca_certs=str(ca),
            certfile=str(cert) if cert else None,
            keyfile=str(key) if key else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.connect_code: int | None = None
        self.assigned_client_id: str | None = None
        self.disconnects: list[int] = []  # reason codes of the broker's disconnections
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = session_expiry
        self.client.connect(
            "127.0.0.1", port, keepalive=30, clean_start=session_expiry == 0, properties=connect
        )
        self.client.loop_start()
        self._wait(lambda: self.connect_code is not None, timeout, "CONNACK")

    # paho callbacks: record and notify only
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self.connect_code = reason_code.value
            self.assigned_client_id = getattr(properties, "AssignedClientIdentifier", None)
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self.disconnects.append(reason_code.value)
            self._cond.notify_all()

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self.acks[mid] = reason_code.value
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self.acks[mid] = max(rc.value for rc in reason_codes)
            self._cond.notify_all()

    def _wait(self, ready, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what} within {timeout}s")
                self._cond.wait(left)

    @property
    def connected(self) -> bool:
        return self.connect_code == 0

    def subscribe(self, *topics: str, timeout: float = 10.0) -> None:
        for topic in topics:
            self.subscribe_code(topic, timeout)

    def subscribe_code(self, topic: str, timeout: float = 10.0) -> int:
        """QoS 1 subscription; returns the SUBACK reason code (1 granted, 135 refused)."""
        rc, mid = self.client.subscribe(topic, qos=1)
        if mid is None:
            raise OSError(f"cannot subscribe to {topic}: {rc}")
        self._wait(lambda: mid in self.acks, timeout, f"SUBACK for {topic}")
        return self.acks[mid]

    def publish(
        self,
        topic: str,
        payload: bytes,
        timeout: float = 10.0,
        *,
        response_topic: str | None = None,
        retain: bool = False,
    ) -> int:
        """QoS 1 publish; returns the PUBACK reason code (0 accepted, 135 not authorized)."""
        properties = None
        if response_topic is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = response_topic
            properties.CorrelationData = b"deploy-test"
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        self._wait(lambda: info.mid in self.acks, timeout, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def wait_for(self, topic: str, payload: bytes | None = None, timeout: float = 10.0) -> None:
        """Until a message on ``topic`` (with ``payload``, if given) has arrived."""
        self._wait(
            lambda: any(t == topic and payload in (None, p) for t, p in self.messages),
            timeout,
            f"message on {topic}",
        )

    def payloads(self, topic: str) -> list[bytes]:
        with self._cond:
            return [p for t, p in self.messages if t == topic]

    def topics(self) -> list[str]:
        with self._cond:
            return [t for t, _ in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sfdisk_image(
    path: Path,
    *,
    size_mb: int = 96,
    boot_mb: int = 32,
    boot_files: Sequence[tuple[str, bytes]] = (),
    fat32: bool = False,
) -> int:
    """A disk image like Raspberry Pi OS's: MBR, FAT-LBA boot partition (FAT16 as
    mkfs.vfat picks it for the size, or FAT32 as on the real 512 MiB one), ext4 root.
    Returns the byte offset of the boot partition."""
    boot_start = 8192
    boot_sectors = boot_mb * 2048
    root_start = boot_start + boot_sectors
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(path)], check=True)
    table = (
        "label: dos\n"
        f"start={boot_start}, size={boot_sectors}, type=c, bootable\n"
        f"start={root_start}, type=83\n"
    )
    subprocess.run(
        ["sfdisk", "-q", str(path)], input=table, text=True, check=True, capture_output=True
    )
    subprocess.run(
        [
            "mkfs.vfat",
            *(["-F", "32", "-s", "1"] if fat32 else []),
            "-n",
            "BOOTFS",
            "--offset",
            str(boot_start),
            str(path),
            str(boot_sectors // 2),
        ],
        check=True,
        capture_output=True,
    )
    root_kib = (size_mb * 1024 * 1024 - root_start * 512) // 1024
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "rootfs",
            "-E",
            f"offset={root_start * 512}",
            str(path),
            f"{root_kib}k",
        ],
        check=True,
        capture_output=True,
    )
    offset = boot_start * 512
    for name, data in boot_files:
        src = path.parent / f".{name}"
        src.write_bytes(data)
        mtools("mcopy", "-i", f"{path}@@{offset}", str(src), f"::/{name}")
        src.unlink()
    return offset


def mtools(*args: str) -> str:
    done = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr}")
    return done.stdout


def sha256(path: Path) -> str:
    """The SHA-256 of a file's or a block device's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def loop_devices_work() -> bool:
    """Whether this machine lets the tests attach loop devices of their own."""
    if missing("losetup") or not Path("/dev/loop-control").exists():
        return False
    done = subprocess.run(["losetup", "-f"], capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.startswith("/dev/loop")


@contextlib.contextmanager
def loop_device(backing: Path, offset: int = 0, *, partitions: bool = False) -> Iterator[Path]:
    """A loop device of the test's own over the regular file ``backing`` (from ``offset``;
    with ``partitions``, its partition table read), detached afterwards."""
    done = subprocess.run(
        [
            "losetup",
            "-f",
            "--show",
            "-o",
            str(offset),
            *(["-P"] if partitions else []),
            str(backing),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    device = Path(done.stdout.strip())
    if partitions:  # the scan at attach time does not always add them
        subprocess.run(["partx", "-a", str(device)], capture_output=True, check=False, timeout=30)
    nodes_before = set(device.parent.glob(f"{device.name}p*"))
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=False, timeout=30)
        # Partition nodes the re-read of the table made; without udev they outlive the device.
        for node in set(device.parent.glob(f"{device.name}p*")) - nodes_before:
            if node.is_block_device():
                node.unlink(missing_ok=True)
