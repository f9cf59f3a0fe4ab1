"""CPU and scheduler figures of a process and of each of its threads, from /proc (Linux).

``/proc/PID/stat`` gives a process's user and system time in clock ticks (all its
threads); ``/proc/PID/task/TID/schedstat`` gives a thread's nanoseconds on a CPU and
nanoseconds waiting on a runqueue for one (ready to run, no CPU free), and
``/proc/PID/task/TID/comm`` its name (the process's name unless the thread set its own).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, all its threads, so far."""
    return _ticks(Path(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    return int(fields[11]) + int(fields[12])


def busy_seconds(cpus: tuple[int, ...]) -> float:
    """CPU time the CPUs spent on any work so far, all processes (``/proc/stat``: every
    field but idle and iowait; guest time is already in user)."""
    wanted = {f"cpu{c}" for c in cpus}
    ticks = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name in wanted:
            values = [int(v) for v in fields[:8]]  # user .. steal
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ThreadSample:
    """One thread's totals at one moment."""

    name: str
    on_cpu_ns: int
    runqueue_ns: int


@dataclass(frozen=True)
class ThreadFigures:
    """What one thread spent over an interval, per request served in it."""

    tid: int
    name: str
    cpu_ms_per_request: float
    runqueue_ms_per_request: float


def thread_samples(pid: int) -> dict[int, ThreadSample]:
    """Every thread of the process now, by thread id (threads that end while being read
    are left out)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            on_cpu, waiting = (task / "schedstat").read_text().split()[:2]
        except (OSError, ValueError):  # the thread ended, or a kernel without schedstat
            continue
        out[int(task.name)] = ThreadSample(name, int(on_cpu), int(waiting))
    return out


def thread_deltas(
    before: dict[int, ThreadSample], after: dict[int, ThreadSample]
) -> dict[int, ThreadSample]:
    """Each thread alive at ``after``: its CPU and runqueue time since ``before`` (from
    zero for a thread started in between)."""
    out = {}
    for tid, now in after.items():
        then = before.get(tid, ThreadSample(now.name, 0, 0))
        out[tid] = ThreadSample(
            now.name, now.on_cpu_ns - then.on_cpu_ns, now.runqueue_ns - then.runqueue_ns
        )
    return out


def add_deltas(
    total: dict[int, ThreadSample], more: dict[int, ThreadSample]
) -> dict[int, ThreadSample]:
    """Two intervals' deltas summed per thread."""
    out = dict(total)
    for tid, d in more.items():
        was = out.get(tid, ThreadSample(d.name, 0, 0))
        out[tid] = ThreadSample(
            d.name, was.on_cpu_ns + d.on_cpu_ns, was.runqueue_ns + d.runqueue_ns
        )
    return out


def per_request(deltas: dict[int, ThreadSample], requests: int) -> list[ThreadFigures]:
    """Threads' deltas per request served in their intervals, the busiest first."""
    per = max(requests, 1) * 1e6
    rows = [
        ThreadFigures(tid, d.name, round(d.on_cpu_ns / per, 3), round(d.runqueue_ns / per, 3))
        for tid, d in deltas.items()
    ]
    return sorted(rows, key=lambda r: (-r.cpu_ms_per_request, r.name))
