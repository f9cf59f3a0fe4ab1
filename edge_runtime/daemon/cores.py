"""How many cores the daemon may use: not the machine's count, but what the scheduler and
the container give this process.

Two limits apply: the CPU affinity (``taskset``, systemd's ``CPUAffinity=``, a cpuset),
and a cgroup v2 CPU quota (``cpu.max``, which ``docker --cpus`` and systemd's
``CPUQuota=`` write) on this process's cgroup or any cgroup above it. A quota of 1.5
cores counts as 1: the cores counted here are ones the daemon can keep busy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cores(
    *,
    affinity: Callable[[], int] | None = None,
    cgroup_root: Path = CGROUP_ROOT,
    self_cgroup: Path = SELF_CGROUP,
) -> int:
    """The cores this process may use, at least 1: its CPU affinity, bounded by the
    tightest cgroup v2 ``cpu.max`` quota from its cgroup up to ``cgroup_root``."""
    count = (affinity or _affinity)()
    quota = cgroup_quota(cgroup_root, self_cgroup)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


def cgroup_quota(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """The tightest ``cpu.max`` quota (in cores) on this process's cgroup v2 path, or None
    when there is none (``max``, no cgroup v2, unreadable files)."""
    try:
        lines = self_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    unified = [line[3:] for line in lines if line.startswith("0::")]
    if not unified:
        return None
    root = cgroup_root.resolve()
    folder = (root / unified[0].lstrip("/")).resolve()
    if not folder.is_relative_to(root):
        return None
    tightest: float | None = None
    while True:
        quota = _cpu_max(folder / "cpu.max")
        if quota is not None and (tightest is None or quota < tightest):
            tightest = quota
        if folder == root:
            return tightest
        folder = folder.parent


def _cpu_max(file: Path) -> float | None:
    """``cpu.max``'s quota in cores ("150000 100000" is 1.5); None for "max" or no file."""
    try:
        fields = file.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
