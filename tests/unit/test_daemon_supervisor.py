"""The supervisor's policy over heartbeats: idle is never stuck, a step past its bound
is, an ended worker is dead; the test-only fault injection."""

from __future__ import annotations

import threading

import pytest

from edge_runtime.daemon.supervisor import Fault, Heartbeat, Supervisor, WorkerKilled


def test_idle_workers_are_never_stuck_busy_ones_are_past_their_bound():
    sup = Supervisor()
    a, b = sup.heartbeat("a", 5.0), sup.heartbeat("b", 60.0)
    a.idle()
    b.beat()
    now = b.since
    assert now is not None
    assert sup.check(now + 30).ok
    a.beat()
    health = sup.check(a.since + 10)  # type: ignore[operator]
    assert [(w.name, w.state) for w in health.unhealthy] == [("a", "stuck")]
    assert "worker a stuck" in health.summary() and "bound 5 s" in health.summary()
    assert health.to_json() == {
        "count": 2,
        "unhealthy": {"a": health.unhealthy[0].state + ": " + health.unhealthy[0].detail},
    }
    a.idle()
    b.idle()
    assert sup.check(now + 1000).ok


def test_a_worker_that_raises_is_dead_with_the_reason():
    sup = Supervisor()
    beat = sup.heartbeat("w", 5.0)

    def body() -> None:
        raise ValueError("boom")

    thread = threading.Thread(target=beat.guard(body))
    thread.start()
    thread.join(5)
    health = sup.check()
    assert [(w.name, w.state) for w in health.dead] == [("w", "dead")]
    assert "ValueError: boom" in health.summary()


def test_a_thread_that_ended_unseen_is_dead():
    sup = Supervisor()
    beat = sup.heartbeat("w", 5.0)
    thread = threading.Thread(target=beat.attach)
    thread.start()
    thread.join(5)
    assert sup.check().dead[0].detail == "its thread ended"


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("die:inference:3", Fault("die", "inference", 3)),
        ("hang:outbox-checkpoint:1", Fault("hang", "outbox-checkpoint", 1)),
        ("crash:r-0001", Fault("crash", "r-0001")),
        ("", None),
        ("die:inference", None),
        ("die:inference:0", None),
        ("explode:inference:1", None),
    ],
)
def test_fault_spec(spec, fault):
    assert Fault.from_env({"EDGE_RUNTIME_FAULT": spec}) == fault


def test_an_injected_death_hits_only_its_worker_at_its_step():
    sup = Supervisor(Fault("die", "w", 2))
    other = sup.heartbeat("other", 5.0)
    w = sup.heartbeat("w", 5.0)
    other.beat()
    other.beat()
    w.beat()
    with pytest.raises(WorkerKilled):
        w.beat()
    w.beat()  # once only


def test_an_unsupervised_heartbeat_needs_no_supervisor():
    beat = Heartbeat("x", 1.0)
    beat.beat()
    beat.idle()
    assert beat.since is None
