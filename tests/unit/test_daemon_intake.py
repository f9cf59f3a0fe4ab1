"""The request worker: messages handled in order on its own thread; a message whose
handling fails is handed to ``fail``, and neither failure ends the worker."""

from __future__ import annotations

import threading

from edge_runtime.daemon.intake import Intake
from edge_runtime.daemon.supervisor import Supervisor
from edge_runtime.transport.mqtt import Message


def message(payload: bytes) -> Message:
    return Message(topic="edge/d/infer", payload=payload, qos=1, mid=1, generation=1)


def test_failures_are_handed_back_and_the_worker_goes_on():
    handled: list[bytes] = []
    failed: list[tuple[bytes, str]] = []
    done = threading.Event()

    def handle(msg: Message) -> None:
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
    intake = Intake(handle, fail, size=2, bound=5.0, heartbeats=supervisor.heartbeat)
    intake.start()
    for payload in (b"one", b"bad", b"bad twice", b"two", b"last"):
        assert intake.put(message(payload), wait=5)
    assert done.wait(5)
    intake.stop()
    assert handled == [b"one", b"two", b"last"]
    assert failed == [(b"bad", "RecursionError"), (b"bad twice", "RecursionError")]
    assert supervisor.names() == ["requests"]


def test_a_full_hand_over_refuses_after_the_wait():
    gate = threading.Event()
    intake = Intake(lambda msg: gate.wait(5), lambda msg, exc: None, size=1, bound=5.0)
    intake.start()
    assert intake.put(message(b"a"), wait=1)  # taken by the worker, which waits
    accepted = [intake.put(message(b"b"), wait=1)]  # queued
    accepted.append(intake.put(message(b"c"), wait=0.05))  # no room
    gate.set()
    intake.stop()
    assert accepted[-1] is False
