"""Poison requests: a request that ended the process is not run again.

While a pipeline worker decodes or runs a request, the request's key sits in that
worker's slot of ``<state_dir>/inflight``, a small file mapped into memory: marking and
clearing a slot is a memory write, no system call, and what reaches the disk is one page
now and then, not a write per request. A process that dies (a crash in native code, the
kernel's OOM killer, systemd's watchdog) leaves its slots marked, and the kernel still
holds the page, so the next process finds the requests that were being served.

At start ``Ledger.open`` counts them in ``<state_dir>/poison.json`` (a rare write): a
request alone in flight when the process ended counts as its cause; two requests in
flight together each count half, so an innocent neighbour is not refused after one
crash. A request whose count reaches one is poison: the pipeline answers it with the
error ``poison`` and it is acknowledged, instead of being run again. A suspect served
once without ending the process is cleared. A process killed from outside (SIGKILL)
looks the same as one a request ended. A power cut or a reboot is not: the kernel may
have written the page out before the machine went down, so the slots are read only when
``<state_dir>/inflight.boot`` names the boot the system is still in.

The key of a request is a hash of its id and its image's length, so a redelivery (same
id, same payload) has the same key, and so has a file dropped again in the watched folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from edge_runtime.bundle.atomic import atomic_write_bytes
from edge_runtime.daemon.liveness import boot_id
from edge_runtime.daemon.requests import Request

log = logging.getLogger(__name__)

INFLIGHT = "inflight"
#: The boot (``/proc/sys/kernel/random/boot_id``) the in-flight slots were written in.
INFLIGHT_BOOT = "inflight.boot"
LEDGER = "poison.json"
KEY_BYTES = 16
#: Bytes of the request id kept in a slot, for the log after a crash.
ID_BYTES = 48
SLOT = KEY_BYTES + ID_BYTES
#: Suspects remembered (the oldest are forgotten first).
REMEMBER = 64
#: What one process end counts for a request alone in flight, and for each of several.
ALONE, SHARED = 2, 1
#: Count at which a request is poison.
POISON_AT = 2
_EMPTY = bytes(SLOT)


def request_key(request: Request) -> bytes:
    """A request's key: its id and its image's length, hashed."""
    data = f"{request.id}\0{len(request.image)}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=KEY_BYTES).digest()


class Ledger:
    """The in-flight slots of this process and the counts kept from earlier ones."""

    def __init__(
        self,
        state_dir: Path,
        slots: int,
        counts: Mapping[str, dict[str, object]],
        *,
        crash_on: str | None = None,
    ) -> None:
        """Use ``open``. ``crash_on``: a request id whose service kills the process
        (``EDGE_RUNTIME_FAULT=crash:ID``, tests only)."""
        self.state_dir = state_dir
        self._counts: dict[str, dict[str, object]] = dict(counts)
        self._poison = {k for k, v in self._counts.items() if _count(v) >= POISON_AT}
        self._crash_on = crash_on
        self._map = _slots(state_dir / INFLIGHT, max(1, slots) * SLOT)

    @classmethod
    def open(cls, state_dir: Path, slots: int, *, crash_on: str | None = None) -> Ledger:
        """Count what an earlier process left in flight, then start with empty slots."""
        counts = _load(state_dir / LEDGER)
        suspects = _suspects(state_dir / INFLIGHT) if _same_boot(state_dir) else {}
        if suspects:
            weight = ALONE if len(suspects) == 1 else SHARED
            for key, request_id in suspects.items():
                entry = counts.pop(key, {"id": request_id, "count": 0})
                entry["count"] = _count(entry) + weight
                counts[key] = entry  # newest last
                log.error(
                    "the last process ended while serving request %r (%s in flight); %s",
                    request_id,
                    len(suspects),
                    "it is answered with the error poison from now on"
                    if _count(entry) >= POISON_AT
                    else "it is refused if that happens again",
                )
            while len(counts) > REMEMBER:
                counts.pop(next(iter(counts)))
            try:
                _save(state_dir / LEDGER, counts)
            except OSError as exc:  # counted for this process all the same
                log.warning("cannot write %s: %s", state_dir / LEDGER, exc)
        return cls(state_dir, slots, counts, crash_on=crash_on)

    def poisoned(self, key: bytes) -> bool:
        """True for a request that ended the process before (cheap when none did)."""
        return bool(self._poison) and key.hex() in self._poison

    def enter(self, slot: int, key: bytes, request_id: str) -> None:
        """The worker of ``slot`` starts decoding or running this request."""
        offset = slot * SLOT
        self._map[offset : offset + SLOT] = key + request_id.encode("utf-8", "surrogatepass")[
            :ID_BYTES
        ].ljust(ID_BYTES, b"\0")
        if self._crash_on is not None and request_id == self._crash_on:
            log.warning("EDGE_RUNTIME_FAULT: killing the process while serving %r", request_id)
            os.kill(os.getpid(), signal.SIGKILL)

    def leave(self, slot: int, key: bytes, served: bool) -> None:
        """The worker of ``slot`` is done with the request; ``served``: it went through
        the model, so a suspect is cleared."""
        offset = slot * SLOT
        self._map[offset : offset + SLOT] = _EMPTY
        if served and self._counts and key.hex() in self._counts:
            self._clear(key.hex())

    def close(self) -> None:
        self._map.close()

    def _clear(self, hexkey: str) -> None:
        entry = self._counts.pop(hexkey, None)
        if entry is None or hexkey in self._poison:
            return
        log.warning("request %r was served this time; no longer a suspect", entry.get("id"))
        try:
            _save(self.state_dir / LEDGER, self._counts)
        except OSError as exc:
            log.warning("cannot update %s: %s", LEDGER, exc)


def _same_boot(state_dir: Path) -> bool:
    """True when the slots were written in this boot, so a marked one was left by a
    process that ended, not by a power cut or reboot; records this boot for the next."""
    path = state_dir / INFLIGHT_BOOT
    now = boot_id()  # empty where the system does not tell: then every start counts
    try:
        then = path.read_text().strip()
    except FileNotFoundError:
        then = None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        then = None
    if then != now:
        try:
            atomic_write_bytes(path, now.encode() + b"\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)
    if then is not None and then != now:
        log.info(
            "the system restarted since the last process: requests it was serving are not suspected"
        )
    return then is None or then == now


def _slots(path: Path, size: int) -> mmap.mmap:
    """``size`` bytes of empty slots in ``path``, mapped. The zeros are written, not
    left as a hole, so no later write to the map needs a block of a full disk (a fault
    there would kill the process); a folder that cannot take them gets slots in memory
    only, and poison requests go unnoticed."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.ftruncate(fd, 0)
            if os.write(fd, bytes(size)) != size:
                raise OSError(f"short write to {path}")
            return mmap.mmap(fd, size)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning(
            "cannot keep in-flight requests in %s (%s); poison requests go unnoticed", path, exc
        )
        return mmap.mmap(-1, size)


def _count(entry: Mapping[str, object]) -> int:
    value = entry.get("count", 0)
    return value if isinstance(value, int) else 0


def _suspects(path: Path) -> dict[str, str]:
    """Key (hex) -> request id of each marked slot an earlier process left."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    found: dict[str, str] = {}
    for offset in range(0, len(data) - SLOT + 1, SLOT):
        slot = data[offset : offset + SLOT]
        if slot != _EMPTY:
            found[slot[:KEY_BYTES].hex()] = (
                slot[KEY_BYTES:].rstrip(b"\0").decode("utf-8", "replace")
            )
    return found


def _load(path: Path) -> dict[str, dict[str, object]]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (ValueError, OSError) as exc:
        log.warning("%s unreadable (%s); starting a new one", path, exc)
        return {}
    requests = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(requests, dict):
        return {}
    return {k: v for k, v in requests.items() if isinstance(k, str) and isinstance(v, dict)}


def _save(path: Path, counts: Mapping[str, Mapping[str, object]]) -> None:
    atomic_write_bytes(path, json.dumps({"requests": counts}, indent=1).encode() + b"\n")
