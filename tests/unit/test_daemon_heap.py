"""The C heap settings of the daemon, checked in fresh processes against glibc itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from edge_runtime.daemon import heap

pytestmark = pytest.mark.skipif(
    heap._glibc() is None, reason="glibc's allocator only (musl and macOS have no arenas)"
)

# Eight threads each allocate and hold 64 kB blocks (malloc'd, past Python's own small
# allocator) at the same time, then the process prints how many arenas glibc made,
# counted from malloc_info's <heap nr=...> entries.
COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading
    from edge_runtime.daemon.heap import limit_arenas
    print(limit_arenas() if sys.argv[1] == "limit" else None, file=sys.stderr)
    start = threading.Barrier(8)
    held = []
    def allocate():
        start.wait()
        held.append([bytearray(65536) for _ in range(20)])
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(open(path).read().count("<heap nr="))
    """
)


def _arenas(env: dict[str, str], limit: bool = True) -> tuple[int, str]:
    """The arenas glibc made in a fresh process, and what ``limit_arenas`` returned."""
    done = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, "limit" if limit else "none"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip()), done.stderr.strip()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    return {**env, **extra}


def test_the_daemons_threads_share_two_arenas():
    """Without the limit eight allocating threads get arenas of their own; with it they
    share two, whatever number of cores the machine has."""
    alone, _ = _arenas(_env(), limit=False)
    limited, said = _arenas(_env())
    assert said == "True"
    assert limited <= heap.ARENAS < alone


def test_an_operators_malloc_arena_max_is_kept():
    """MALLOC_ARENA_MAX in the environment (read by glibc at start) is left as it is."""
    arenas, said = _arenas(_env(MALLOC_ARENA_MAX="4"))
    assert said == "False"
    assert arenas == 4


def test_the_heap_is_trimmed_without_raising():
    heap.trim_heap()
