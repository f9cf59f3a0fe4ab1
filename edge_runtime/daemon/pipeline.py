"""The request pipeline: bounded queue -> preprocessing workers -> inference worker ->
answer worker.

The preprocessing workers decode and resize the next requests while the inference
worker runs ``invoke()`` on the current one (the interpreter and Pillow's decoder both
release the GIL), so every core is used. The answer worker hands what was answered to
``answer`` in batches: everything finished since its last call, so that under load one
hand-over to the publisher and one wake-up serve many requests, and the inference
worker, the one stage every request passes alone, does nothing but inference. With more than one
preprocessing worker, answers may leave in a slightly different order than the requests
came. The workers beyond the first run at a lower priority (``BACKLOG_NICE``): they use
the cycles the inference worker leaves, rather than an equal share of them. The queue is
bounded in jobs and in image bytes; a full one refuses (after the caller's wait) and the
caller answers with an error; every accepted job is in exactly one batch handed to
``answer``.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from edge_runtime.daemon.poison import Ledger, request_key
from edge_runtime.daemon.requests import Request, RequestError
from edge_runtime.daemon.supervisor import Heartbeat, Heartbeats, unsupervised
from edge_runtime.errors import EdgeError, InputError
from edge_runtime.inference.serialize import prediction_to_dict
from edge_runtime.telemetry.stats import Tally

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A request (or a request that already failed parsing) and what to do when answered."""

    request: Request | None
    error: RequestError | None
    done: Callable[[bool, dict[str, Any]], None]
    enqueued: float = 0.0


#: One answered job: the job, its prediction dict or None, its error or None.
Answered = tuple[Job, Optional[dict[str, Any]], Optional[RequestError]]
#: answer(batch): store the answers, in order (called from the answer worker alone)
Answer = Callable[[list[Answered]], None]


class DirectReply(Protocol):
    """A job's ``done`` that takes its answer itself, away from the MQTT answer path
    (an HTTP request's worker, a camera source)."""

    def deliver(self, result: dict[str, Any] | None, error: RequestError | None) -> None: ...


def deliver_directly(reply_type: type[DirectReply], rest: Answer) -> Answer:
    """The pipeline's ``answer``: a job whose ``done`` is a ``reply_type`` gets its answer
    through ``deliver`` at once; all others go to ``rest``, in order."""

    def answer(batch: list[Answered]) -> None:
        others: list[Answered] = []
        for item in batch:
            job, result, error = item
            if isinstance(job.done, reply_type):
                job.done.deliver(result, error)
            else:
                others.append(item)
        if others:
            rest(others)

    return answer


#: Most answers handed over in one batch.
MAX_BATCH = 64
#: A hand-over of answers running longer than this counts as stuck (a failing disk):
#: the watchdog is no longer fed, so systemd restarts the daemon.
STUCK_AFTER = 10.0
#: Longest decoding of one image, and longest inference, before the worker counts as
#: stuck (a 16-megapixel JPEG takes about a second on a Pi 4; a large model's invoke
#: several).
PREPARE_BOUND = 30.0
INFER_BOUND = 60.0
#: served(model version, ok, service ms or None): each request that reached the model
Served = Callable[[Optional[str], bool, Optional[float]], None]
#: observe(prepared input, answer): each answered request, for drift monitoring
Observe = Callable[[Any, dict[str, Any]], None]
#: costs(ms): the preprocessing time of each request a preprocessing worker prepared
Costs = Callable[[float], None]
#: Niceness added to the preprocessing workers beyond the first. At equal priority two
#: decoders and the inference worker each got two thirds of a core on two cores, so the
#: inference worker, which every request passes alone, fell behind, the decoders stalled
#: on a full hand-over queue and a core went idle (6-7% of each burst, measured; 3-4%
#: with this).
BACKLOG_NICE = 10
_STOP = object()
POISON_DETAIL = "this request was being served when the daemon's process ended; it is not run again"


class Pipeline:
    def __init__(
        self,
        engine: Any,
        *,
        queue_size: int,
        max_pixels: int,
        top_k: int,
        answer: Answer,
        tally: Tally,
        heartbeats: Heartbeats = unsupervised,
        served: Served | None = None,
        workers: int = 1,
        max_bytes: int | None = None,
        stuck_after: float = STUCK_AFTER,
        ledger: Ledger | None = None,
        observe: Observe | None = None,
        costs: Costs | None = None,
    ) -> None:
        """``max_bytes`` bounds the image bytes of the jobs not yet answered (at least one
        job is always taken): memory stays bounded even when a broker pushes more
        messages than its receive maximum allows. Each worker reports to its heartbeat
        from ``heartbeats``; the hand-over of answers is stuck after ``stuck_after`` s.
        ``ledger`` (one slot per preprocessing worker and one for inference) keeps
        the requests being served, and refuses those that ended a process before.
        ``observe`` sees each answered request's prepared input and answer (drift
        monitoring); it must be cheap and must not raise. ``costs`` gets the preprocessing
        time of each request the workers decoded (not of camera frames, prepared by their
        source, nor of tensors): what choosing the threads needs; cheap, never raises."""
        self.engine = engine
        self.max_pixels = max_pixels
        self.top_k = top_k
        self._answer = answer
        self._tally = tally
        self._served = served
        self._ledger = ledger
        self._observe = observe
        self._costs = costs
        self._queue: queue.Queue[Job | object] = queue.Queue(maxsize=queue_size)
        self._workers = max(1, workers)
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=self._workers + 1)
        self._closing = threading.Event()
        self._threads = [
            _thread(heartbeats, f"preprocess-{i}", PREPARE_BOUND, self._prepare_loop, i)
            for i in range(self._workers)
        ] + [
            _thread(heartbeats, "inference", INFER_BOUND, self._infer_loop),
            _thread(heartbeats, "answers", stuck_after, self._answer_loop),
        ]
        self._done: queue.SimpleQueue[Answered | object] = queue.SimpleQueue()
        self._busy = 0
        self._lock = threading.Lock()
        self.max_bytes = max_bytes
        self._bytes = 0  # image bytes of the jobs taken and not yet answered
        self._room = threading.Condition()
        self._backlog = threading.Condition()  # wakes the extra workers when jobs pile up
        self._invoking = threading.Condition()  # notified as each inference starts

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, job: Job, wait: float = 0.0) -> bool:
        """Queue a job, waiting up to ``wait`` seconds for room; False when the queue
        stayed full or the pipeline is stopping."""
        if self._closing.is_set():
            return False
        deadline = time.monotonic() + max(wait, 0.0)
        size = _size(job)
        with self._room:
            while (
                self.max_bytes is not None and self._bytes and self._bytes + size > self.max_bytes
            ):
                left = deadline - time.monotonic()
                if left <= 0 or self._closing.is_set():
                    return False
                self._room.wait(left)
            self._bytes += size
        try:
            self._queue.put(
                Job(job.request, job.error, job.done, time.perf_counter()),
                timeout=max(deadline - time.monotonic(), 0.001) if wait > 0 else None,
                block=wait > 0,
            )
        except queue.Full:
            self._release(size)
            return False
        with self._lock:
            self._busy += 1
        if self._workers > 1 and self._queue.qsize() > 1:
            with self._backlog:
                self._backlog.notify_all()
        return True

    def _release(self, size: int) -> None:
        with self._room:
            self._bytes -= size
            self._room.notify_all()

    def swap(self, engine: Any) -> None:
        """Serve new requests with ``engine``. Requests already prepared finish on the
        engine they were prepared for; the old engine is freed after its last one."""
        self.engine = engine

    def when_invoking(self, timeout: float) -> bool:
        """Wait until the inference worker starts its next inference (True) or for
        ``timeout`` seconds (False: nothing to run). A thread about to hold the GIL for
        milliseconds (building an interpreter) does it then, while ``invoke()`` runs
        without the GIL, rather than between two requests, where it would stall both."""
        with self._invoking:
            return self._invoking.wait(timeout)

    def depth(self) -> int:
        with self._lock:
            return self._busy

    def stop(self, timeout: float) -> bool:
        """Stop taking jobs, finish the queued ones; True if all finished in time."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        stops = 0
        while stops < self._workers:  # one for each preprocessing worker, after the jobs
            try:
                self._queue.put(_STOP, timeout=0.1)
                stops += 1
            except queue.Full:
                if time.monotonic() > deadline:
                    return False
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- workers ------------------------------------------------------------------------
    def _prepare_loop(self, rank: int, beat: Heartbeat) -> None:
        """Worker ``rank`` > 0 helps only while more than ``rank`` jobs wait: under light
        load one worker decodes at a time, so it does not compete with ``invoke()`` for
        the cores and latency stays low; under a backlog every worker decodes, the extra ones
        at a lower priority."""
        if rank:
            lower_thread_priority(BACKLOG_NICE)
        while True:
            beat.idle()
            if rank:
                with self._backlog:
                    while self._queue.qsize() <= rank and not self._closing.is_set():
                        self._backlog.wait(0.05)
            item = self._queue.get()
            beat.beat()
            if item is _STOP:
                self._ready.put(_STOP)
                return
            job: Job = item  # type: ignore[assignment]
            engine = self.engine  # the input is prepared for this engine and runs on it
            prepared: Any = None
            error = job.error
            key = b""
            ledger = self._ledger
            if error is None and job.request is not None and ledger is not None:
                key = request_key(job.request)
                if ledger.poisoned(key):
                    error = RequestError("poison", POISON_DETAIL, job.request.id)
            if error is None and job.request is not None:
                if ledger is not None:
                    ledger.enter(rank, key, job.request.id)
                try:
                    if job.request.prepared is not None:
                        prepared = job.request.prepared  # infer checks it is for this engine
                    elif job.request.tensor:
                        prepared = engine.prepare_tensor(job.request.image)
                    else:
                        prepared = engine.prepare(job.request.image, max_pixels=self.max_pixels)
                        if self._costs is not None:
                            self._costs(prepared.preprocess_ms)
                except InputError as exc:
                    error = RequestError(_input_code(str(exc)), str(exc), job.request.id)
                except Exception as exc:  # noqa: BLE001 - a request must never stop the daemon
                    log.exception("preprocessing failed")
                    error = RequestError(
                        "bad_image", f"cannot read the image: {exc}", job.request.id
                    )
                finally:
                    if ledger is not None:
                        ledger.leave(rank, key, served=False)
            beat.idle()  # waiting for the inference worker, which has its own heartbeat
            self._ready.put((job, prepared, error, engine, key))

    def _infer_loop(self, beat: Heartbeat) -> None:
        running = self._workers
        while True:
            beat.idle()
            item = self._ready.get()
            beat.beat()
            if item is _STOP:
                running -= 1
                if running == 0:
                    self._done.put(_STOP)
                    return
                continue
            job, prepared, error, engine, key = item
            result: dict[str, Any] | None = None
            if error is None:
                with self._invoking:
                    self._invoking.notify_all()
                ledger = self._ledger
                if ledger is not None:
                    ledger.enter(self._workers, key, job.request.id)
                try:
                    prediction = engine.infer(prepared, top_k=job.request.top_k or self.top_k)
                    result = prediction_to_dict(prediction)
                    self._tally.inferred((time.perf_counter() - job.enqueued) * 1000)
                    if self._observe is not None:
                        self._observe(prepared, result)
                except EdgeError as exc:
                    error = RequestError("inference_failed", str(exc), job.request.id)
                except Exception as exc:  # noqa: BLE001 - keep serving
                    log.exception("inference failed")
                    error = RequestError(
                        "inference_failed", f"{type(exc).__name__}: {exc}", job.request.id
                    )
                finally:
                    if ledger is not None:
                        ledger.leave(self._workers, key, served=result is not None)
                if self._served is not None:
                    spent = result.get("latency_ms") if result else None
                    self._served(
                        engine.identity.version,
                        result is not None,
                        sum(spent.values()) if isinstance(spent, dict) else None,
                    )
            self._done.put((job, result, error))

    def _answer_loop(self, beat: Heartbeat) -> None:
        while True:
            batch: list[Answered] = []
            beat.idle()
            item = self._done.get()
            beat.beat()
            while item is not _STOP:
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._done.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._hand_over(batch)
            if item is _STOP:
                return

    def _hand_over(self, batch: list[Answered]) -> None:
        for _, _, error in batch:
            if error is not None:
                self._tally.failed(error.code)
        try:
            self._answer(batch)
        except Exception:  # noqa: BLE001
            log.exception("could not store %d answers", len(batch))
        with self._lock:
            self._busy -= len(batch)
        self._release(sum(_size(job) for job, _, _ in batch))


def _thread(
    heartbeats: Heartbeats, name: str, bound: float, loop: Callable[..., None], *args: Any
) -> threading.Thread:
    """A worker thread running ``loop(*args, heartbeat)`` under its heartbeat."""
    beat = heartbeats(name, bound)
    return threading.Thread(
        target=beat.guard(functools.partial(loop, *args, beat)), name=name, daemon=True
    )


def lower_thread_priority(increment: int) -> None:
    """Add ``increment`` to the calling thread's niceness (at most 19). Linux keeps a
    niceness per thread; elsewhere the call would change the whole process, so it does
    nothing there."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + increment))
    except OSError as exc:  # a sandbox may refuse it; the worker still runs
        log.debug("could not lower a worker's priority: %s", exc)


def _size(job: Job) -> int:
    return len(job.request.image) if job.request is not None else 0


def _input_code(message: str) -> str:
    text = message.lower()
    if "pixel" in text or "megapixel" in text:
        return "too_many_pixels"
    if "truncat" in text:
        return "truncated_image"
    return "not_an_image"
