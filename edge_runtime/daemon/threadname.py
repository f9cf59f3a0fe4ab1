"""The calling thread's name as the OS sees it (``/proc/PID/task/TID/comm``, ``top -H``,
``ps -L``): Python's thread names stay inside the interpreter, so without this every
worker shows the process name. Linux only (``prctl(PR_SET_NAME)``); elsewhere nothing."""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

PR_SET_NAME = 15
#: The kernel keeps 16 bytes with the terminating NUL.
MAX_BYTES = 15


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the OS, cut to 15 bytes between characters.
    A refusal is logged at debug level: the thread runs the same without a name."""
    if sys.platform != "linux":
        return
    raw = name.encode()[:MAX_BYTES].decode(errors="ignore").encode()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_NAME, %r) failed: errno %d", raw, ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # no libc to load, or one without prctl
        log.debug("could not name the thread %r: %s", name, exc)
