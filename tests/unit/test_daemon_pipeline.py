"""The pipeline with a fake engine: every job answered once, refusal when full, overlap."""

from __future__ import annotations

import os
import threading
import time

from edge_runtime.daemon.pipeline import BACKLOG_NICE, Job, Pipeline
from edge_runtime.daemon.requests import Request, RequestError
from edge_runtime.daemon.supervisor import Health, Supervisor
from edge_runtime.errors import InputError
from edge_runtime.telemetry.stats import Tally


class FakeEngine:
    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.prepared_during_invoke = 0
        self.invoking = False

    def prepare(self, data, *, max_pixels):
        if data == b"bad":
            raise InputError("not an image")
        if self.invoking:
            self.prepared_during_invoke += 1
        return data

    def infer(self, prepared, *, top_k):
        self.invoking = True
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(0.01)
        self.invoking = False
        return prepared


def run(engine, jobs, *, queue_size=16, workers=1, **options):
    answers = []
    import edge_runtime.daemon.pipeline as pipeline

    original = pipeline.prediction_to_dict
    pipeline.prediction_to_dict = lambda p: {"echo": p.decode()}
    try:
        pipe = Pipeline(
            engine,
            queue_size=queue_size,
            max_pixels=100,
            top_k=1,
            answer=lambda batch: answers.extend(
                (job.request.id if job.request else err.request_id, res, err)
                for job, res, err in batch
            ),
            tally=Tally(10),
            workers=workers,
            **options,
        )
        pipe.start()
        accepted = [pipe.submit(j) for j in jobs]
        assert pipe.stop(10)
    finally:
        pipeline.prediction_to_dict = original
    return accepted, answers


def job(i, data=b"img"):
    return Job(
        Request(f"r{i}", data + str(i).encode() if data != b"bad" else data),
        None,
        lambda ok, doc: None,
    )


def test_every_job_answered_once_in_order_with_errors():
    jobs = [
        job(0),
        job(1, b"bad"),
        job(2),
        Job(None, RequestError("bad_json", "x", "r3"), lambda ok, doc: None),
    ]
    accepted, answers = run(FakeEngine(), jobs)
    assert all(accepted)
    assert [a[0] for a in answers] == ["r0", "r1", "r2", "r3"]
    assert answers[0][1] == {"echo": "img0"}
    assert answers[1][2].code == "not_an_image"
    assert answers[3][2].code == "bad_json"


def test_full_queue_refuses_instead_of_blocking():
    gate = threading.Event()
    engine = FakeEngine(gate)
    pipe = Pipeline(
        engine, queue_size=2, max_pixels=100, top_k=1, answer=lambda *a: None, tally=Tally(10)
    )
    pipe.start()
    results = []
    for _ in range(3):  # fill, and again once the workers took what they could
        results += [pipe.submit(job(len(results) + i)) for i in range(10)]
        time.sleep(0.2)
    results += [pipe.submit(job(len(results) + i)) for i in range(10)]
    # at most: 1 in invoke, 2 prepared and waiting, 1 being prepared, 2 queued
    assert results.count(True) == 6 and results[-1] is False
    start = time.monotonic()
    assert pipe.submit(job(99), wait=0.2) is False
    assert 0.15 < time.monotonic() - start < 2
    gate.set()
    assert pipe.stop(10)
    assert pipe.submit(job(100)) is False  # stopped


def test_preprocessing_overlaps_invoke():
    engine = FakeEngine()
    run(engine, [job(i) for i in range(20)], queue_size=32)
    assert engine.prepared_during_invoke > 0


def _health_later(supervisor: Supervisor) -> Health:
    """The verdict as it will be an hour from now, if nothing moves meanwhile."""
    return supervisor.check(time.monotonic() + 3600)


def _wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(predicate())


def _stuck_worker_is_named(engine, answer, release, stuck, **options):  # type: ignore[no-untyped-def]
    """Idle workers are never stuck; the one whose step does not end is, by name, until
    it moves again."""
    supervisor = Supervisor()
    pipe = Pipeline(
        engine,
        queue_size=4,
        max_pixels=100,
        top_k=1,
        answer=answer,
        tally=Tally(10),
        heartbeats=supervisor.heartbeat,
        **options,
    )
    pipe.start()
    assert {"preprocess-0", "inference", "answers"} <= set(supervisor.names())
    assert _wait_for(lambda: all(b.thread is not None for b in supervisor.heartbeats()))
    assert _health_later(supervisor).ok, "idle workers waiting for work are not stuck"
    assert pipe.submit(job(1))

    def named() -> list[tuple[str, str]]:
        return [(w.name, w.state) for w in _health_later(supervisor).unhealthy]

    assert _wait_for(lambda: named() == [(stuck, "stuck")]), named()
    assert supervisor.check().ok  # within its bound it is busy, not stuck
    release.set()
    assert _wait_for(lambda: _health_later(supervisor).ok)
    assert pipe.stop(5)


def test_a_hanging_invoke_makes_the_inference_worker_stuck():
    gate = threading.Event()
    _stuck_worker_is_named(FakeEngine(gate), lambda batch: None, gate, "inference")


def test_a_hanging_store_of_answers_makes_the_answer_worker_stuck():
    release = threading.Event()  # a disk that does not answer until set
    _stuck_worker_is_named(
        FakeEngine(), lambda batch: release.wait(10), release, "answers", stuck_after=0.3
    )


def test_several_preprocessing_workers_answer_every_job_once_and_stop_cleanly():
    jobs = [job(i, b"bad" if i % 7 == 0 else b"img") for i in range(60)]
    accepted, answers = run(FakeEngine(), jobs, queue_size=64, workers=3)
    assert all(accepted)
    assert sorted(a[0] for a in answers) == sorted(f"r{i}" for i in range(60))
    failed = {a[0] for a in answers if a[2] is not None}
    assert failed == {f"r{i}" for i in range(0, 60, 7)}
    threads = {t.name for t in threading.enumerate()}
    assert not any(n.startswith("preprocess-") or n in ("inference", "answers") for n in threads)


def test_image_bytes_in_the_pipeline_are_bounded():
    gate = threading.Event()
    answers = []
    pipe = Pipeline(
        FakeEngine(gate),
        queue_size=100,
        max_pixels=100,
        top_k=1,
        answer=lambda batch: answers.extend(job.request.id for job, _, _ in batch),
        tally=Tally(10),
        max_bytes=10,
    )
    pipe.start()
    big = Job(Request("big", b"x" * 50), None, lambda ok, doc: None)
    assert pipe.submit(big)  # one job is always taken, however large
    small = Job(Request("small", b"y" * 4), None, lambda ok, doc: None)
    started = time.monotonic()
    assert not pipe.submit(small, wait=0.3)  # no room until "big" is answered
    assert time.monotonic() - started >= 0.3
    gate.set()
    assert pipe.submit(small, wait=5)  # room once it was
    assert pipe.stop(10)
    assert answers == ["big", "small"]


def test_answers_finished_meanwhile_are_handed_over_together_in_order():
    batches: list[list[str]] = []
    first = threading.Event()

    def answer(batch):  # type: ignore[no-untyped-def]
        batches.append([job.request.id for job, _, _ in batch])
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # a slow disk: the next answers pile up meanwhile

    pipe = Pipeline(
        FakeEngine(), queue_size=64, max_pixels=100, top_k=1, answer=answer, tally=Tally(10)
    )
    pipe.start()
    assert all(pipe.submit(job(i)) for i in range(20))
    assert pipe.stop(10)
    assert [rid for b in batches for rid in b] == [f"r{i}" for i in range(20)]
    assert len(batches[0]) == 1 and max(len(b) for b in batches[1:]) > 1
    assert pipe.depth() == 0


def test_a_failing_answer_store_does_not_stop_the_pipeline_and_frees_its_room():
    calls = []

    def answer(batch):  # type: ignore[no-untyped-def]
        calls.append(len(batch))
        if len(calls) == 1:
            raise OSError("disk full")

    pipe = Pipeline(
        FakeEngine(),
        queue_size=4,
        max_pixels=100,
        top_k=1,
        answer=answer,
        tally=Tally(10),
        max_bytes=5,  # one job's image bytes at a time
    )
    pipe.start()
    assert pipe.submit(job(0))
    assert pipe.submit(job(1), wait=5)  # room came back though the first store failed
    assert pipe.stop(10)
    assert sum(calls) == 2 and pipe.depth() == 0


def test_the_extra_preprocessing_workers_run_at_a_lower_priority():
    """Only the workers that help under a backlog are niced (Linux keeps a niceness per
    thread): the first worker and the inference worker keep the process's priority."""
    pipe = Pipeline(
        FakeEngine(),
        queue_size=4,
        max_pixels=100,
        top_k=1,
        answer=lambda b: None,
        tally=Tally(10),
        workers=3,
    )
    base = os.getpriority(os.PRIO_PROCESS, 0)
    pipe.start()
    try:
        threads = {t.name: t for t in threading.enumerate()}
        deadline = time.monotonic() + 5
        nice = {}
        while time.monotonic() < deadline:  # each worker sets its own priority as it starts
            nice = {
                name: os.getpriority(os.PRIO_PROCESS, threads[name].native_id)
                for name in ("preprocess-0", "preprocess-1", "preprocess-2", "inference")
            }
            if nice["preprocess-2"] != base:
                break
            time.sleep(0.01)
        lowered = min(19, base + BACKLOG_NICE)
        assert nice == {
            "preprocess-0": base,
            "preprocess-1": lowered,
            "preprocess-2": lowered,
            "inference": base,
        }
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the process itself is untouched
    finally:
        assert pipe.stop(10)


def test_when_invoking_wakes_as_an_inference_starts_and_times_out_when_idle():
    """A model swap times its GIL-bound steps to a running inference through this."""
    gate = threading.Event()
    engine = FakeEngine(gate)
    pipe = Pipeline(
        engine, queue_size=4, max_pixels=100, top_k=1, answer=lambda b: None, tally=Tally(10)
    )
    pipe.start()
    try:
        start = time.monotonic()
        assert pipe.when_invoking(0.2) is False  # idle: nothing to overlap
        assert time.monotonic() - start >= 0.19
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(pipe.when_invoking(5)))
        waiter.start()
        time.sleep(0.1)
        assert pipe.submit(job(1))
        waiter.join(5)
        assert woke == [True]  # woken by the inference, not by the timeout
    finally:
        gate.set()
        assert pipe.stop(5)


def test_costs_are_the_workers_preprocessing_only():
    """Choosing the threads again follows what the preprocessing workers spend: a camera
    frame arrives prepared by its source (its decode is not the workers' work) and is
    left out, as is a request that is already a tensor."""
    from types import SimpleNamespace

    class TimedEngine(FakeEngine):
        def prepare(self, data, *, max_pixels):
            return SimpleNamespace(data=data, preprocess_ms=4.0)

        def prepare_tensor(self, data):
            return SimpleNamespace(data=data, preprocess_ms=0.5)

        def infer(self, prepared, *, top_k):
            return b"ok"

    costs: list[float] = []
    frame = SimpleNamespace(data=b"frame", preprocess_ms=1.0)
    jobs = [
        Job(Request("request", b"jpeg"), None, lambda ok, doc: None),
        Job(Request("frame", b"", prepared=frame), None, lambda ok, doc: None),
        Job(Request("tensor", b"\0" * 4, tensor=True), None, lambda ok, doc: None),
    ]
    accepted, answers = run(TimedEngine(), jobs, costs=costs.append)
    assert all(accepted) and len(answers) == 3
    assert costs == [4.0]
