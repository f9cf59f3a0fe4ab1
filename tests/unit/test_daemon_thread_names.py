"""The daemon's worker threads carry their names to the OS (``/proc/PID/task/TID/comm``),
so that per-thread figures (top -H, the scaling benchmark's thread table) say which
worker is which instead of showing the process name for every thread."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from edge_runtime.daemon.pipeline import _thread
from edge_runtime.daemon.supervisor import Heartbeat, unsupervised
from edge_runtime.daemon.threadname import name_os_thread

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="thread names via /proc")


def _comm() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


@linux_only
def test_a_worker_started_the_daemons_way_has_its_os_thread_name() -> None:
    seen: list[str] = []

    def loop(beat: Heartbeat) -> None:
        seen.append(_comm())

    worker = _thread(unsupervised, "preprocess-0", 1.0, loop)
    worker.start()
    worker.join(10)
    assert seen == ["preprocess-0"]


def _named_in_a_thread(name: str) -> str:
    """What the OS calls a new thread after ``name_os_thread(name)`` in it."""
    seen: list[str] = []

    def body() -> None:
        name_os_thread(name)
        seen.append(_comm())

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(10)
    return seen[0]


@linux_only
def test_a_long_name_is_cut_to_the_kernels_15_bytes() -> None:
    assert _named_in_a_thread("source-front-door-camera") == "source-front-do"


@linux_only
def test_a_name_is_cut_between_characters_not_inside_one() -> None:
    # é is two bytes: 14 + 2 > 15
    assert _named_in_a_thread("source-kamera-é") == "source-kamera-"
