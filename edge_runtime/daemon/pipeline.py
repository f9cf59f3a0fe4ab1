"""The request pipeline: bounded queue -> preprocessing worker -> inference worker.

The preprocessing worker decodes and resizes the next request while the inference
worker runs ``invoke()`` on the current one (the interpreter releases the GIL), so two
cores are used. A full queue refuses at once (the caller answers with an error); every
accepted job ends in exactly one call of ``answer``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from edge_runtime.daemon.requests import Request, RequestError
from edge_runtime.errors import EdgeError, InputError
from edge_runtime.telemetry.stats import Tally

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A request (or a request that already failed parsing) and what to do when answered."""

    request: Request | None
    error: RequestError | None
    done: Callable[[bool, dict[str, Any]], None]
    enqueued: float = 0.0


#: answer(job, prediction dict or None, error or None)
Answer = Callable[[Job, Optional[dict[str, Any]], Optional[RequestError]], None]
#: served(model version, ok, service ms or None): each request that reached the model
Served = Callable[[Optional[str], bool, Optional[float]], None]
_STOP = object()


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
        heartbeat: Callable[[], None] = lambda: None,
        served: Served | None = None,
    ) -> None:
        self.engine = engine
        self.max_pixels = max_pixels
        self.top_k = top_k
        self._answer = answer
        self._tally = tally
        self._heartbeat = heartbeat
        self._served = served
        self._queue: queue.Queue[Job | object] = queue.Queue(maxsize=queue_size)
        self._ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._closing = threading.Event()
        self._threads = [
            threading.Thread(target=self._prepare_loop, name="preprocess", daemon=True),
            threading.Thread(target=self._infer_loop, name="inference", daemon=True),
        ]
        self._busy = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, job: Job, wait: float = 0.0) -> bool:
        """Queue a job, waiting up to ``wait`` seconds for room; False when the queue
        stayed full or the pipeline is stopping."""
        if self._closing.is_set():
            return False
        try:
            self._queue.put(
                Job(job.request, job.error, job.done, time.perf_counter()),
                timeout=max(wait, 0.0) or None,
                block=wait > 0,
            )
        except queue.Full:
            return False
        with self._lock:
            self._busy += 1
        return True

    def swap(self, engine: Any) -> None:
        """Serve new requests with ``engine``. Requests already prepared finish on the
        engine they were prepared for; the old engine is freed after its last one."""
        self.engine = engine

    def depth(self) -> int:
        with self._lock:
            return self._busy

    def stop(self, timeout: float) -> bool:
        """Stop taking jobs, finish the queued ones; True if all finished in time."""
        self._closing.set()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    return False
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- workers ------------------------------------------------------------------------
    def _prepare_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._ready.put(_STOP)
                return
            job: Job = item  # type: ignore[assignment]
            engine = self.engine  # the input is prepared for this engine and runs on it
            prepared: Any = None
            error = job.error
            if error is None and job.request is not None:
                try:
                    prepared = engine.prepare(job.request.image, max_pixels=self.max_pixels)
                except InputError as exc:
                    error = RequestError(_input_code(str(exc)), str(exc), job.request.id)
                except Exception as exc:  # noqa: BLE001 - a request must never stop the daemon
                    log.exception("preprocessing failed")
                    error = RequestError(
                        "bad_image", f"cannot read the image: {exc}", job.request.id
                    )
            self._ready.put((job, prepared, error, engine))

    def _infer_loop(self) -> None:
        while True:
            self._heartbeat()
            try:
                item = self._ready.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _STOP:
                return
            job, prepared, error, engine = item
            result: dict[str, Any] | None = None
            if error is None:
                try:
                    prediction = engine.infer(prepared, top_k=self.top_k)
                    from edge_runtime.inference.serialize import prediction_to_dict

                    result = prediction_to_dict(prediction)
                    self._tally.inferred((time.perf_counter() - job.enqueued) * 1000)
                except EdgeError as exc:
                    error = RequestError("inference_failed", str(exc), job.request.id)
                except Exception as exc:  # noqa: BLE001 - keep serving
                    log.exception("inference failed")
                    error = RequestError(
                        "inference_failed", f"{type(exc).__name__}: {exc}", job.request.id
                    )
                if self._served is not None:
                    spent = result.get("latency_ms") if result else None
                    self._served(
                        engine.identity.version,
                        result is not None,
                        sum(spent.values()) if isinstance(spent, dict) else None,
                    )
            if error is not None:
                self._tally.failed()
            try:
                self._answer(job, result, error)
            except Exception:  # noqa: BLE001
                log.exception(
                    "could not store the answer to %s", job.request.id if job.request else "?"
                )
            with self._lock:
                self._busy -= 1


def _input_code(message: str) -> str:
    text = message.lower()
    if "pixel" in text or "megapixel" in text:
        return "too_many_pixels"
    if "truncat" in text:
        return "truncated_image"
    return "not_an_image"
