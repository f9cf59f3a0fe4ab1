"""The liveness file: proof, readable by another process, that the daemon is well.

The daemon refreshes its liveness file each time it feeds systemd's watchdog, which it
does only while every worker is healthy (see ``supervisor``); ``edge-runtime health``
reads it (a container's health check, where no systemd watches the process). The file
holds the kernel's boot id and the monotonic clock at the refresh, so neither a wall-clock
step (NTP on a device without a real-time clock) nor a file left from an earlier boot
makes a hung daemon look alive. One fixed-length line rewritten in place.

It is rewritten every second, so it lives in memory, not in the state folder: each
rewrite of a page that the kernel had written out dirties it again, a page written to the
SD card every half a minute for nothing (4 KiB each, about 68 bytes per answer in the
benchmark). ``liveness_path`` is where: systemd's ``RuntimeDirectory=`` (the service
file's ``/run/edge-runtime``), else ``/run/edge-runtime`` when it exists and is writable
(the same folder for ``edge-runtime health`` run from a shell), else ``/dev/shm`` (also
in a container, where it is the container's own), else the state folder (no tmpfs). The
name carries a hash of the state folder, so that daemons of different state folders
(each its own daemon) never share a file.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The file's name in the state folder, where no folder in memory exists.
LIVENESS_NAME = "liveness"
#: The folder systemd's ``RuntimeDirectory=edge-runtime`` makes (a tmpfs).
RUNTIME_DIR = Path("/run/edge-runtime")
#: The POSIX shared-memory tmpfs, in every Linux system and container.
SHM_DIR = Path("/dev/shm")
#: Where the kernel tells this boot's id (also read by ``poison``).
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def liveness_path(state_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Where the daemon of ``state_dir`` keeps its liveness file, given the environment
    (``os.environ`` by default): the daemon and ``edge-runtime health`` both ask here."""
    env = os.environ if environ is None else environ
    digest = hashlib.sha256(str(state_dir.resolve()).encode("utf-8", "surrogateescape"))
    name = f"{LIVENESS_NAME}-{digest.hexdigest()[:16]}"
    given = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if given:
        return Path(given) / name
    if _writable_folder(RUNTIME_DIR):
        return RUNTIME_DIR / name
    if _writable_folder(SHM_DIR):
        return SHM_DIR / f"edge-runtime-{name}"
    return state_dir / LIVENESS_NAME


def _writable_folder(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def boot_id() -> str:
    """This boot's id ("" where the kernel does not say)."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Beat:
    """One refresh: the boot it happened in and ``time.monotonic()`` then."""

    boot: str
    monotonic: float

    def line(self) -> bytes:
        # fixed width, so that a rewrite in place never leaves a longer line's tail; the
        # time rounded down, so that a reader's clock right after is never before it
        millis = math.floor(self.monotonic * 1000) / 1000
        return f"{self.boot:<36} {millis:016.3f}\n".encode("ascii")

    @staticmethod
    def parse(text: str) -> Beat | None:
        """The beat a file holds, or None when it is not one."""
        parts = text.split()
        if len(parts) != 2:
            return None
        try:
            return Beat(parts[0], float(parts[1]))
        except ValueError:
            return None

    def age(self, now: Beat) -> float | None:
        """Seconds from this beat to ``now``; None when they are not of the same boot or
        ``now`` comes first (the file is not this boot's)."""
        if self.boot != now.boot or now.monotonic < self.monotonic:
            return None
        return now.monotonic - self.monotonic


def now_beat() -> Beat:
    return Beat(boot_id(), time.monotonic())


class LivenessFile:
    """Owned by the thread that feeds the watchdog: ``touch`` on each feed, ``remove`` at
    a stop. A failure to write is logged once and never stops the daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._failed = False

    def touch(self) -> None:
        try:
            if self._fd is None:
                # not through a link: /dev/shm is open to every user
                flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                self._fd = os.open(self.path, flags, 0o644)
            os.pwrite(self._fd, now_beat().line(), 0)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot write the liveness file %s: %s", self.path, exc)
            self._failed = True
            return
        self._failed = False

    def remove(self) -> None:
        """The daemon stops: the file goes, so that no check finds it alive."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the liveness file %s: %s", self.path, exc)


@dataclass(frozen=True)
class Verdict:
    """What ``edge-runtime health`` says: ``healthy`` and one line why."""

    healthy: bool
    detail: str


def check_liveness(path: Path, max_age: float, now: Beat | None = None) -> Verdict:
    """Healthy when ``path`` holds a beat of this boot at most ``max_age`` s old."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return Verdict(False, f"no liveness file {path}: the daemon is starting or stopped")
    except OSError as exc:
        return Verdict(False, f"cannot read the liveness file {path}: {exc.strerror or exc}")
    beat = Beat.parse(text)
    if beat is None:
        return Verdict(False, f"the liveness file {path} holds no heartbeat")
    age = beat.age(now or now_beat())
    if age is None:
        return Verdict(False, f"the liveness file {path} is from an earlier boot or process")
    if age > max_age:
        return Verdict(
            False,
            f"the daemon last reported every worker well {age:.1f} s ago (bound {max_age:g} s)",
        )
    return Verdict(True, f"every worker well {age:.1f} s ago")
