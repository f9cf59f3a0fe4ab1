"""How many cores the daemon may use: not the machine's count, but what the scheduler and
the container give this process.

Two limits apply: the CPU affinity (``taskset``, systemd's ``CPUAffinity=``, a cpuset),
and a CPU quota (which ``docker --cpus`` and systemd's ``CPUQuota=`` write) on this
process's cgroup or any cgroup above it: cgroup v2's ``cpu.max``, or on a host whose cpu
controller is still on cgroup v1 (v1 alone, or a hybrid hierarchy) its
``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``. A quota of 1.5 cores counts as 1: the
cores counted here are ones the daemon can keep busy.
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
    tightest cgroup CPU quota from its cgroup up to ``cgroup_root``."""
    count = (affinity or _affinity)()
    quota = cgroup_quota(cgroup_root, self_cgroup)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


def cgroup_quota(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> float | None:
    """The tightest CPU quota (in cores) on this process's cgroup paths: cgroup v2's
    ``cpu.max`` and cgroup v1's ``cpu`` hierarchy; None when there is none (``max``,
    ``-1``, no such cgroup, unreadable files)."""
    try:
        lines = self_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    quotas: list[float | None] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if line.startswith("0::"):  # the unified (v2) hierarchy
            quotas.append(_tightest(cgroup_root, path, _cpu_max))
        elif "cpu" in controllers.split(","):  # v1: mounted as "cpu,cpuacct" or "cpu"
            quotas.append(_tightest(cgroup_root / controllers, path, _cfs_quota))
    return min((q for q in quotas if q is not None), default=None)


def _tightest(mount: Path, path: str, quota_in: Callable[[Path], float | None]) -> float | None:
    """The smallest ``quota_in(folder)`` from ``path`` (a cgroup under ``mount``) up to
    the mount's root; folders that are not there are passed through (in a container
    without its own cgroup namespace the mount's root is the container's cgroup)."""
    root = mount.resolve()
    folder = (root / path.lstrip("/")).resolve()
    if not folder.is_relative_to(root):
        return None
    tightest: float | None = None
    while True:
        quota = quota_in(folder)
        if quota is not None and (tightest is None or quota < tightest):
            tightest = quota
        if folder == root:
            return tightest
        folder = folder.parent


def _cpu_max(folder: Path) -> float | None:
    """``cpu.max``'s quota in cores ("150000 100000" is 1.5); None for "max" or no file."""
    fields = _read(folder / "cpu.max").split()
    return _cores(*fields) if len(fields) == 2 else None


def _cfs_quota(folder: Path) -> float | None:
    """cgroup v1's ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``; None for -1 or no file."""
    return _cores(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))


def _cores(quota: str, period: str) -> float | None:
    """``quota`` / ``period`` (microseconds) when both are positive whole numbers."""
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max", garbled or empty
        return None
    return q / p if q > 0 and p > 0 else None


def _read(file: Path) -> str:
    """The file's ASCII text, or "" when it cannot be read."""
    try:
        return file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
