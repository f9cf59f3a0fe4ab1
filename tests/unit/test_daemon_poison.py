"""Poison requests: what a process left in flight is counted by the next one; a request
that ended a process alone is refused, one of two in flight needs a second time."""

from __future__ import annotations

import json
import threading

from edge_runtime.daemon.pipeline import Job, Pipeline
from edge_runtime.daemon.poison import LEDGER, Ledger, request_key
from edge_runtime.daemon.requests import Request
from edge_runtime.telemetry.stats import Tally


def req(rid: str, image: bytes = b"img") -> Request:
    return Request(rid, image)


def crashed_while_serving(state_dir, *requests: Request) -> None:  # type: ignore[no-untyped-def]
    """A process that ends with ``requests`` in its slots (the map is left as it is)."""
    ledger = Ledger.open(state_dir, len(requests))
    for slot, r in enumerate(requests):
        ledger.enter(slot, request_key(r), r.id)


def test_a_request_alone_in_flight_when_the_process_ended_is_poison(tmp_path):
    crashed_while_serving(tmp_path, req("boom"))
    ledger = Ledger.open(tmp_path, 2)
    assert ledger.poisoned(request_key(req("boom")))
    assert not ledger.poisoned(request_key(req("boom", b"other image")))
    assert not ledger.poisoned(request_key(req("fine")))
    doc = json.loads((tmp_path / LEDGER).read_text())
    assert [v["id"] for v in doc["requests"].values()] == ["boom"]
    # the slots start empty: a clean start after it counts nothing more
    again = Ledger.open(tmp_path, 2)
    assert again.poisoned(request_key(req("boom")))
    assert json.loads((tmp_path / LEDGER).read_text()) == doc


def test_two_in_flight_each_need_a_second_crash_and_a_served_one_is_cleared(tmp_path):
    a, b = req("a"), req("b")
    crashed_while_serving(tmp_path, a, b)
    ledger = Ledger.open(tmp_path, 2)
    assert not ledger.poisoned(request_key(a)) and not ledger.poisoned(request_key(b))
    ledger.leave(0, request_key(b), served=True)  # b went through the model: innocent
    crashed_while_serving(tmp_path, a, req("c"))
    ledger = Ledger.open(tmp_path, 2)
    assert ledger.poisoned(request_key(a))
    assert not ledger.poisoned(request_key(b)) and not ledger.poisoned(request_key(req("c")))


def test_a_clean_run_leaves_nothing_to_count(tmp_path):
    ledger = Ledger.open(tmp_path, 1)
    key = request_key(req("x"))
    ledger.enter(0, key, "x")
    ledger.leave(0, key, served=True)
    Ledger.open(tmp_path, 1)
    assert not (tmp_path / LEDGER).exists()


def test_an_unwritable_state_folder_still_serves(tmp_path):
    (tmp_path / "inflight").mkdir()  # not a file: the slots live in memory only
    ledger = Ledger.open(tmp_path, 1)
    ledger.enter(0, request_key(req("x")), "x")
    ledger.leave(0, request_key(req("x")), served=True)


class Engine:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def prepare(self, data, *, max_pixels):  # type: ignore[no-untyped-def]
        self.seen.append(data)
        return data

    def infer(self, prepared, *, top_k):  # type: ignore[no-untyped-def]
        return prepared


def test_the_pipeline_answers_a_poison_request_without_running_it(tmp_path, monkeypatch):
    import edge_runtime.daemon.pipeline as pipeline

    monkeypatch.setattr(pipeline, "prediction_to_dict", lambda p: {"echo": p.decode()})
    crashed_while_serving(tmp_path, req("boom", b"deadly"))
    engine, answers, done = Engine(), [], threading.Event()

    def answer(batch):  # type: ignore[no-untyped-def]
        answers.extend((j.request.id, res, err and err.code) for j, res, err in batch)
        if len(answers) == 2:
            done.set()

    pipe = Pipeline(
        engine,
        queue_size=4,
        max_pixels=10,
        top_k=1,
        answer=answer,
        tally=Tally(10),
        ledger=Ledger.open(tmp_path, 2),
    )
    pipe.start()
    assert pipe.submit(Job(req("boom", b"deadly"), None, lambda ok, doc: None))
    assert pipe.submit(Job(req("fine", b"good"), None, lambda ok, doc: None))
    assert done.wait(5)
    assert pipe.stop(5)
    assert answers == [("boom", None, "poison"), ("fine", {"echo": "good"}, None)]
    assert engine.seen == [b"good"]


def test_requests_in_flight_at_a_power_cut_or_reboot_are_not_suspected(tmp_path, monkeypatch):
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr("edge_runtime.daemon.liveness.BOOT_ID", boot)  # the one boot id
    state = tmp_path / "state"
    state.mkdir()
    crashed_while_serving(state, req("innocent"))
    boot.write_text("boot-2\n")  # the machine lost power with the page written out
    ledger = Ledger.open(state, 1)
    assert not ledger.poisoned(request_key(req("innocent")))
    assert not (state / LEDGER).exists()
    # within one boot a process that ended still counts
    crashed_while_serving(state, req("boom"))
    assert Ledger.open(state, 1).poisoned(request_key(req("boom")))
