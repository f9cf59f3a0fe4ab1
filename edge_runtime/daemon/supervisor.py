"""Supervision in one place: every long-lived worker owns a heartbeat, one supervisor
reads them all, and the daemon feeds systemd's watchdog from there alone.

A worker marks each step it starts (``beat``, a monotonic timestamp write) and, before
it waits for work, that it is idle (``idle``): an idle worker is never stuck, a busy one
is stuck once its step runs past the worker's bound. A worker that ends while the daemon
runs (an exception, or a return) is dead; ``guard`` records why. ``Supervisor.check`` is
pure over the heartbeats and a time, so the policy is tested without threads; what the
daemon does about an unhealthy worker (no watchdog, ``STATUS=``, telemetry, exit) is in
``app``.

``EDGE_RUNTIME_FAULT`` (read once at start, for tests only) injects a fault into one
worker: ``die:WORKER:N`` ends the worker at its N-th step, ``hang:WORKER:N`` stalls it
there for good. ``crash:REQUEST_ID`` (see ``poison``) kills the process while that
request is being served.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from edge_runtime.daemon.threadname import name_os_thread

log = logging.getLogger(__name__)

#: The variable that injects a fault (tests only).
FAULT_ENV = "EDGE_RUNTIME_FAULT"


class WorkerKilled(BaseException):
    """An injected death (``die:``): a BaseException, so that it passes the handlers a
    worker has for the failures of one item and ends the thread as a bug would."""

    def __init__(self, worker: str, step: int) -> None:
        super().__init__(f"fault injected by {FAULT_ENV} at step {step}")
        self.worker = worker
        self.step = step


@dataclass(frozen=True)
class Fault:
    """A fault to inject: ``kind`` die, hang or crash; ``target`` a worker or a request
    id; ``step`` the worker's step it hits (die, hang)."""

    kind: str
    target: str
    step: int = 1

    @staticmethod
    def from_env(environ: Mapping[str, str]) -> Fault | None:
        """The fault ``EDGE_RUNTIME_FAULT`` names, or None (unset or not understood,
        which is logged)."""
        spec = environ.get(FAULT_ENV, "")
        if not spec:
            return None
        kind, _, rest = spec.partition(":")
        if kind == "crash" and rest:
            fault = Fault(kind, rest)
        else:
            worker, _, step = rest.rpartition(":")
            if kind not in ("die", "hang") or not worker or not step.isdigit() or int(step) < 1:
                log.error("%s=%r not understood; no fault injected", FAULT_ENV, spec)
                return None
            fault = Fault(kind, worker, int(step))
        log.warning("%s: injecting %s into %s (tests only)", FAULT_ENV, fault.kind, fault.target)
        return fault


class Heartbeat:
    """One worker's progress: when its running step began (None while idle), and how
    it ended, if it did."""

    __slots__ = ("name", "bound", "since", "thread", "ended", "_fault", "_steps")

    def __init__(self, name: str, bound: float, fault: Fault | None = None) -> None:
        self.name = name
        self.bound = bound
        self.since: float | None = None
        self.thread: threading.Thread | None = None
        self.ended: str | None = None
        self._fault = fault
        self._steps = 0

    def beat(self) -> None:
        """A step begins (work taken, or a periodic round)."""
        self.since = time.monotonic()
        if self._fault is not None:
            self._inject(self._fault)

    def idle(self) -> None:
        """The worker waits for work: not stuck, however long that takes."""
        self.since = None

    def attach(self) -> None:
        """Called by the worker's thread: this heartbeat is that thread's, which is dead
        once it ends (``guard`` does it, and records why). The thread takes the worker's
        name in the OS too, for per-thread tools (top -H, /proc/PID/task)."""
        self.thread = threading.current_thread()
        name_os_thread(self.name)

    def guard(self, target: Callable[[], None]) -> Callable[[], None]:
        """``target`` as a thread's body that records its thread and how it ended."""

        def run() -> None:
            self.attach()
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - recorded and logged: the thread ends
                self.ended = f"{type(exc).__name__}: {exc}"
                log.critical("worker %s died: %s", self.name, self.ended, exc_info=exc)
                return
            self.ended = "returned"

        return run

    def _inject(self, fault: Fault) -> None:
        self._steps += 1
        if self._steps != fault.step:
            return
        log.warning("worker %s: injected %s at step %d", self.name, fault.kind, self._steps)
        if fault.kind == "die":
            raise WorkerKilled(self.name, self._steps)
        threading.Event().wait()  # hang: never set


#: heartbeats(name, bound) -> the heartbeat of a worker called ``name``
Heartbeats = Callable[[str, float], Heartbeat]


def unsupervised(name: str, bound: float) -> Heartbeat:
    """A heartbeat nobody reads: for a worker run without a supervisor."""
    return Heartbeat(name, bound)


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    state: str  # ok, stuck or dead
    detail: str = ""


@dataclass(frozen=True)
class Health:
    workers: tuple[WorkerHealth, ...]

    @property
    def ok(self) -> bool:
        return all(w.state == "ok" for w in self.workers)

    @property
    def dead(self) -> tuple[WorkerHealth, ...]:
        return tuple(w for w in self.workers if w.state == "dead")

    @property
    def unhealthy(self) -> tuple[WorkerHealth, ...]:
        return tuple(w for w in self.workers if w.state != "ok")

    def summary(self) -> str:
        """One line naming each unhealthy worker ("" when all are well)."""
        return "; ".join(f"worker {w.name} {w.state} ({w.detail})" for w in self.unhealthy)

    def to_json(self) -> dict[str, object]:
        """What telemetry reports as ``workers``."""
        return {
            "count": len(self.workers),
            "unhealthy": {w.name: f"{w.state}: {w.detail}" for w in self.unhealthy},
        }


class Supervisor:
    """The registry of heartbeats, and the verdict over them."""

    def __init__(self, fault: Fault | None = None) -> None:
        self.fault = fault
        self._beats: list[Heartbeat] = []
        self._lock = threading.Lock()

    def heartbeat(self, name: str, bound: float) -> Heartbeat:
        """Register the worker ``name``, stuck when one step runs past ``bound`` s."""
        fault = self.fault
        if fault is None or fault.kind == "crash" or fault.target != name:
            fault = None
        beat = Heartbeat(name, bound, fault)
        with self._lock:
            self._beats.append(beat)
        return beat

    def heartbeats(self) -> list[Heartbeat]:
        with self._lock:
            return list(self._beats)

    def names(self) -> list[str]:
        return [b.name for b in self.heartbeats()]

    def check(self, now: float | None = None) -> Health:
        """Each worker's state at ``now`` (``time.monotonic()``): dead once it ended,
        stuck once its running step is older than its bound, else ok."""
        now = time.monotonic() if now is None else now
        return Health(tuple(_state(b, now) for b in self.heartbeats()))


def _state(beat: Heartbeat, now: float) -> WorkerHealth:
    ended, since, thread = beat.ended, beat.since, beat.thread
    if ended is not None:
        return WorkerHealth(beat.name, "dead", ended)
    if thread is not None and not thread.is_alive():
        return WorkerHealth(beat.name, "dead", "its thread ended")
    if since is not None and math.isfinite(beat.bound) and now - since > beat.bound:
        return WorkerHealth(
            beat.name, "stuck", f"one step running for {now - since:.0f} s, bound {beat.bound:g} s"
        )
    return WorkerHealth(beat.name, "ok")
