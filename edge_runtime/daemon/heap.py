"""The C heap of a long-running daemon with many threads (glibc's allocator; on others,
musl or macOS, nothing here does anything).

glibc gives every thread that allocates an arena of its own, up to eight per core, and
each arena keeps what was freed in it for that thread's next allocation. The daemon runs
a dozen threads, and a camera source's decoder several more. Measured on a 2-core x86-64
machine with a 1920x1080 H.264 stream decoded as fast as it comes (``benchmarks/sources.py
--runs fps0``, 150 s): resident memory 293 MiB five seconds in and 313 MiB at the end
with glibc's default, 252 and 254 MiB with two arenas, at the same CPU per frame (52.1
and 53.0 ms). The daemon serving 1920x1080 JPEG requests at saturation: the same CPU per
request, peak RSS 108.5 -> 106.5 MiB. Threads that allocate at the same moment wait for
each other's arena lock, which matters little here: most allocations are made holding
Python's GIL, and the decoders reuse their buffers.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: Arenas the daemon's threads share (glibc's own default: 8 per core).
ARENAS = 2
#: glibc's ``mallopt`` parameter number for the arena limit.
M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc's; musl and macOS have none
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Let the threads started from now on share ``arenas`` arenas; call it before the
    workers start. ``MALLOC_ARENA_MAX`` in the environment wins (glibc read it at start),
    so an operator can set another limit. True when the limit was set here."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        return False
    if libc.mallopt(M_ARENA_MAX, arenas) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
        return False
    return True


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (``malloc_trim``): a calibration's
    sample image and the engines it closed leave several MiB freed but resident, which a
    small device would carry for as long as it runs."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
