"""The request worker: messages handled in order on its own thread; a message whose
handling fails is handed to ``fail``, and neither failure ends the worker."""

from __future__ import annotations

import threading
import time

from edge_runtime.daemon.intake import Intake
from edge_runtime.daemon.supervisor import Supervisor
from edge_runtime.transport.mqtt import Message


def message(payload: bytes) -> Message:
    return Message(topic="edge/d/infer", payload=payload, qos=1, mid=1, generation=1)


def refuse(msg: Message, arrived: float) -> None:
    raise AssertionError(f"refused {msg.payload!r}")


def test_failures_are_handed_back_and_the_worker_goes_on():
    handled: list[bytes] = []
    failed: list[tuple[bytes, str]] = []
    done = threading.Event()

    def handle(msg: Message, arrived: float) -> None:
        if msg.payload.startswith(b"bad"):
            raise RecursionError("too deep")
        handled.append(msg.payload)
        if msg.payload == b"last":
            done.set()

    def fail(msg: Message, exc: Exception) -> None:
        failed.append((msg.payload, type(exc).__name__))
        if msg.payload == b"bad twice":
            raise OSError("database or disk is full")  # its error answer fails too

    supervisor = Supervisor()
    intake = Intake(
        handle, fail, refuse, size=2, max_bytes=1 << 20, bound=5.0, heartbeats=supervisor.heartbeat
    )
    intake.start()
    for payload in (b"one", b"bad", b"bad twice", b"two", b"last"):
        assert intake.put(message(payload), wait=5)
    assert done.wait(5)
    intake.stop()
    assert handled == [b"one", b"two", b"last"]
    assert failed == [(b"bad", "RecursionError"), (b"bad twice", "RecursionError")]
    assert supervisor.names() == ["requests", "refusals"]


def gated(gate: threading.Event, size: int, max_bytes: int = 1 << 20) -> Intake:
    """A started intake whose request worker waits for ``gate`` at each message."""
    intake = Intake(
        lambda msg, arrived: gate.wait(5),
        lambda msg, exc: None,
        refuse,
        size=size,
        max_bytes=max_bytes,
        bound=5.0,
    )
    intake.start()
    return intake


def test_a_full_hand_over_refuses_after_the_wait():
    gate = threading.Event()
    intake = gated(gate, size=1)
    assert intake.put(message(b"a"), wait=1)  # taken by the worker, which waits
    accepted = [intake.put(message(b"b"), wait=1)]  # queued
    accepted.append(intake.put(message(b"c"), wait=0.05))  # no room
    gate.set()
    intake.stop()
    assert accepted[-1] is False


def test_requests_that_find_the_worker_behind_are_refused_by_the_other_worker():
    """The request worker waits (a full pipeline); the requests beyond its lane go to the
    refusal worker at once, in order, each with the time it arrived; none is lost."""
    gate = threading.Event()
    handled: list[bytes] = []
    refused: list[tuple[bytes, float]] = []
    all_refused = threading.Event()
    taken = threading.Event()

    def handle(msg: Message, arrived: float) -> None:
        taken.set()
        gate.wait(5)
        handled.append(msg.payload)

    def refuse_it(msg: Message, arrived: float) -> None:
        refused.append((msg.payload, arrived))
        if len(refused) == 20:
            all_refused.set()

    intake = Intake(handle, lambda msg, exc: None, refuse_it, size=1, max_bytes=1 << 20, bound=5.0)
    intake.start()
    before = time.monotonic()
    assert intake.put(message(b"0"), wait=5, refusable=True)
    assert taken.wait(5)  # the worker holds it: its lane is empty
    for i in range(1, 22):
        assert intake.put(message(b"%d" % i), wait=5, refusable=True)
    assert all_refused.wait(5)  # while the request worker still waits
    gate.set()
    intake.stop()
    assert handled == [b"0", b"1"]  # the one being handled, the one in its lane
    assert [p for p, _ in refused] == [b"%d" % i for i in range(2, 22)]
    assert all(before <= arrived <= time.monotonic() for _, arrived in refused)


def test_a_message_that_is_not_a_request_waits_for_the_request_worker():
    gate = threading.Event()
    handled: list[bytes] = []

    def handle(msg: Message, arrived: float) -> None:
        gate.wait(5)
        handled.append(msg.payload)

    intake = Intake(handle, lambda msg, exc: None, refuse, size=1, max_bytes=1 << 20, bound=5.0)
    intake.start()
    assert intake.put(message(b"a"), wait=1)
    assert intake.put(message(b"b"), wait=1)
    threading.Timer(0.2, gate.set).start()
    assert intake.put(message(b"notice"), wait=5)  # not refusable: it waits for room
    intake.stop()
    assert handled == [b"a", b"b", b"notice"]


def test_the_lanes_are_bounded_in_payload_bytes():
    gate = threading.Event()
    intake = gated(gate, size=8, max_bytes=100)
    assert intake.put(message(b"x" * 60), wait=1)  # taken by the worker
    assert intake.put(message(b"x" * 60), wait=1)  # an empty lane takes any one
    assert not intake.put(message(b"x" * 60), wait=0.05)  # 120 bytes > 100
    assert intake.put(message(b"x" * 40), wait=0.05)  # 100 bytes
    gate.set()
    intake.stop()
