"""Probation of a newly activated model: the health gate and the crash-loop counter.

A model that passed validation can still be bad in service: slow on real inputs, failing
on some of them, or taking the whole process down. After activation the new model is on
probation until it has served ``requests`` requests (or ``seconds`` have passed):

- the **health gate** watches what the pipeline serves: the share of requests the model
  failed (``inference_failed``; a client's bad image is not the model's fault) and the
  p90 service time (preprocess + invoke + postprocess, queueing excluded), against an
  absolute bound and against the previous model's p90 measured just before the swap
  (a ratio over the bound that is within ``LATENCY_SLACK_MS`` of it is scheduling noise);
- the **crash-loop counter** (``probation.json`` in the state folder, written atomically)
  counts the processes that started on the model and ended without a clean stop. When it
  reaches ``crash_starts`` the next start rolls back before loading the model.

Either failure rolls back to the previous version and is reported (``rolled_back`` with
reason ``health`` or ``crash_loop``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edge_runtime.bundle.atomic import atomic_writer

log = logging.getLogger(__name__)

#: The crash-loop record, in the state folder.
RECORD = "probation.json"
#: Service times kept for the baseline of the model being served.
BASELINE_WINDOW = 200
#: Fewer samples than this give no baseline (the latency ratio is then not checked).
MIN_BASELINE = 20
#: A p90 within this many ms of the previous model's is never too slow by the ratio: for
#: a sub-millisecond model a busy machine's scheduling alone makes several times as much
#: (a Pi's scheduler tick is 4 ms).
LATENCY_SLACK_MS = 2.0


@dataclass(frozen=True)
class HealthPolicy:
    requests: int = 50  # served requests that end probation
    seconds: float = 600.0  # probation ends after this even with fewer requests
    max_error_rate: float = 0.1  # share of requests the model may fail
    max_latency_ms: float | None = None  # bound on the p90 service time
    latency_factor: float = 4.0  # p90 at most this times the previous model's (0: off)
    crash_starts: int = 3  # unclean ends on probation before the next start rolls back


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


class HealthGate:
    """Fed by the inference thread (``record``), judged by the update thread (``verdict``)."""

    def __init__(self, policy: HealthPolicy, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=BASELINE_WINDOW)
        self._version: str | None = None  # the version on probation, None when none is
        self._started = 0.0
        self._baseline: float | None = None
        self._served = 0
        self._failed = 0
        self._times: list[float] = []

    @property
    def active(self) -> bool:
        with self._lock:
            return self._version is not None

    def begin(self, version: str | None) -> None:
        """Start the probation of ``version``; the previous model's p90 becomes the baseline."""
        with self._lock:
            recent = list(self._recent)
            self._baseline = _p90(recent) if len(recent) >= MIN_BASELINE else None
            self._recent.clear()
            self._version = version or "?"
            self._started = self._clock()
            self._served = self._failed = 0
            self._times = []

    def end(self) -> None:
        with self._lock:
            self._version = None

    def record(self, version: str | None, ok: bool, service_ms: float | None) -> None:
        """One request that reached the model: answered (``ok``) or failed by it."""
        with self._lock:
            if ok and service_ms is not None:
                self._recent.append(service_ms)
            if self._version is None or (version or "?") != self._version:
                return  # not on probation, or prepared for the model before the swap
            self._served += 1
            if not ok:
                self._failed += 1
            elif service_ms is not None:
                self._times.append(service_ms)

    def verdict(self) -> Verdict | None:
        """None while probation goes on; a verdict once enough was served or time is up."""
        p = self.policy
        with self._lock:
            if self._version is None:
                return None
            elapsed = self._clock() - self._started
            if self._served < p.requests and elapsed < p.seconds:
                return None
            served, failed, times, baseline = (
                self._served,
                self._failed,
                list(self._times),
                self._baseline,
            )
        if served == 0:
            return Verdict(True, f"no requests in {elapsed:.0f} s of probation; nothing to judge")
        rate = failed / served
        if rate > p.max_error_rate:
            return Verdict(
                False,
                f"the model failed {failed} of {served} requests ({rate:.0%}; "
                f"at most {p.max_error_rate:.0%} allowed)",
            )
        if times:
            p90 = _p90(times)
            if p.max_latency_ms is not None and p90 > p.max_latency_ms:
                return Verdict(
                    False,
                    f"p90 service time {p90:.1f} ms over the {p.max_latency_ms:g} ms bound",
                )
            if (
                p.latency_factor
                and baseline
                and p90 > p.latency_factor * baseline
                and p90 - baseline > LATENCY_SLACK_MS
            ):
                return Verdict(
                    False,
                    f"p90 service time {p90:.1f} ms is {p90 / baseline:.0f}x the previous "
                    f"model's {baseline:.2f} ms (at most {p.latency_factor:g}x allowed)",
                )
        return Verdict(True, f"{served} requests served, {failed} failed")


# -- crash-loop record ----------------------------------------------------------------
@dataclass(frozen=True)
class Probation:
    """What survives a restart: the bundle on probation and how its processes ended."""

    bundle: str  # file name in models/ (the target of models/current)
    name: str
    version: str | None
    sha256: str  # of the bundle file, as the notice announced it
    crashes: int = 0  # processes that ran it and did not stop cleanly
    running: bool = False  # a process is serving it now (False after a clean stop)


def load_probation(state_dir: Path) -> Probation | None:
    """The record, or None (none, or unreadable: probation is then simply over)."""
    path = Path(state_dir) / RECORD
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Probation(**doc)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring an unreadable %s: %s", path, exc)
        return None


def save_probation(state_dir: Path, record: Probation) -> None:
    with atomic_writer(Path(state_dir) / RECORD) as handle:
        handle.write(json.dumps(asdict(record), sort_keys=True).encode())


def clear_probation(state_dir: Path) -> None:
    (Path(state_dir) / RECORD).unlink(missing_ok=True)


def note_start(state_dir: Path, active_bundle: str | None) -> Probation | None:
    """Called once per process start, before the model is loaded: count the previous
    process's unclean end (if it was serving the bundle on probation) and mark this one
    as running. Returns the updated record, or None when no model is on probation."""
    record = load_probation(state_dir)
    if record is None:
        return None
    if record.bundle != active_bundle:  # the link moved on (another update, a rollback)
        clear_probation(state_dir)
        return None
    record = replace(record, crashes=record.crashes + (1 if record.running else 0), running=True)
    save_probation(state_dir, record)
    return record


def note_clean_stop(state_dir: Path) -> None:
    """A clean shutdown does not count as a crash."""
    record = load_probation(state_dir)
    if record is not None and record.running:
        save_probation(state_dir, replace(record, running=False))
