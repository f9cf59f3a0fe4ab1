"""Probation of an applied model: the health gate's verdicts, the crash-loop record across
process starts, the start-up rollback, and the memory of refused bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.update.health import (
    LATENCY_SLACK_MS,
    HealthGate,
    HealthPolicy,
    Probation,
    load_probation,
    note_clean_stop,
    note_start,
    save_probation,
)
from edge_runtime.update.service import RefusedBundles, recover_crash_loop
from edge_runtime.update.store import ModelStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate(**policy: object) -> tuple[HealthGate, Clock]:
    clock = Clock()
    return HealthGate(HealthPolicy(**policy), clock=clock), clock  # type: ignore[arg-type]


def serve(g: HealthGate, version: str, n: int, ms: float, failures: int = 0) -> None:
    for i in range(n):
        ok = i >= failures
        g.record(version, ok, ms if ok else None)


def test_a_healthy_model_passes_once_enough_requests_were_served() -> None:
    g, _ = gate(requests=20)
    serve(g, "1.0.0", 50, 2.0)  # the old model: its p90 is the baseline
    g.begin("2.0.0")
    serve(g, "2.0.0", 19, 2.5)
    assert g.verdict() is None
    serve(g, "2.0.0", 1, 2.5)
    verdict = g.verdict()
    assert verdict is not None and verdict.passed, verdict
    assert "20 requests served, 0 failed" in verdict.detail


def test_too_many_failed_requests_fail_the_gate() -> None:
    g, _ = gate(requests=20, max_error_rate=0.1)
    g.begin("2.0.0")
    serve(g, "2.0.0", 20, 1.0, failures=3)
    verdict = g.verdict()
    assert verdict is not None and not verdict.passed
    assert verdict.detail == "the model failed 3 of 20 requests (15%; at most 10% allowed)"


def test_at_the_error_bound_the_gate_passes() -> None:
    g, _ = gate(requests=20, max_error_rate=0.1)
    g.begin("2.0.0")
    serve(g, "2.0.0", 20, 1.0, failures=2)
    verdict = g.verdict()
    assert verdict is not None and verdict.passed


def test_a_model_much_slower_than_the_previous_one_fails() -> None:
    g, _ = gate(requests=20, latency_factor=4.0)
    serve(g, "1.0.0", 40, 0.5)
    g.begin("2.0.0")
    serve(g, "2.0.0", 20, 6.0)
    verdict = g.verdict()
    assert verdict is not None and not verdict.passed
    assert "p90 service time 6.0 ms is 12x the previous model's 0.50 ms" in verdict.detail


def test_a_few_tenths_of_a_millisecond_slower_is_not_too_slow() -> None:
    """A sub-millisecond model whose p90 went from 0.3 to 1.5 ms on a busy machine (seen
    with a model no slower than its predecessor): 5x, but 1.2 ms is scheduling noise, not
    a slow model; the ratio counts only beyond LATENCY_SLACK_MS."""
    g, _ = gate(requests=20, latency_factor=4.0)
    serve(g, "1.0.0", 40, 0.3)
    g.begin("2.0.0")
    serve(g, "2.0.0", 20, 0.3 + LATENCY_SLACK_MS * 0.9)
    verdict = g.verdict()
    assert verdict is not None and verdict.passed, verdict


def test_the_latency_ratio_needs_a_baseline_and_can_be_switched_off() -> None:
    g, _ = gate(requests=10, latency_factor=4.0)
    serve(g, "1.0.0", 5, 0.5)  # too few samples for a baseline
    g.begin("2.0.0")
    serve(g, "2.0.0", 10, 6.0)
    assert g.verdict().passed  # type: ignore[union-attr]
    g2, _ = gate(requests=10, latency_factor=0.0)
    serve(g2, "1.0.0", 40, 0.5)
    g2.begin("2.0.0")
    serve(g2, "2.0.0", 10, 6.0)
    assert g2.verdict().passed  # type: ignore[union-attr]


def test_an_absolute_latency_bound() -> None:
    g, _ = gate(requests=10, max_latency_ms=5.0, latency_factor=0.0)
    g.begin("2.0.0")
    serve(g, "2.0.0", 10, 7.5)
    verdict = g.verdict()
    assert verdict is not None and not verdict.passed
    assert verdict.detail == "p90 service time 7.5 ms over the 5 ms bound"


def test_requests_prepared_for_the_old_model_do_not_count() -> None:
    g, _ = gate(requests=10)
    g.begin("2.0.0")
    serve(g, "1.0.0", 30, 1.0, failures=30)  # the old model finishing its last requests
    assert g.verdict() is None


def test_probation_ends_when_its_time_is_up() -> None:
    g, clock = gate(requests=100, seconds=60)
    g.begin("2.0.0")
    serve(g, "2.0.0", 3, 1.0)
    clock.now += 59
    assert g.verdict() is None
    clock.now += 2
    verdict = g.verdict()
    assert verdict is not None and verdict.passed and "3 requests" in verdict.detail
    g.end()
    g.begin("3.0.0")
    clock.now += 61
    verdict = g.verdict()
    assert verdict is not None and verdict.passed and "no requests" in verdict.detail


def test_no_verdict_without_probation() -> None:
    g, clock = gate()
    serve(g, "1.0.0", 100, 1.0, failures=100)
    clock.now += 10_000
    assert g.verdict() is None and not g.active


def _record(version: str = "2.0.0", **kw: object) -> Probation:
    fields = {"crashes": 0, "running": True, **kw}
    return Probation(f"digits-{version}.edgebundle", "digits", version, "ab" * 32, **fields)  # type: ignore[arg-type]


def test_unclean_ends_are_counted_across_starts(tmp_path: Path) -> None:
    save_probation(tmp_path, _record())
    # the process that applied the update died: the next start counts it
    assert note_start(tmp_path, "digits-2.0.0.edgebundle").crashes == 1  # type: ignore[union-attr]
    assert note_start(tmp_path, "digits-2.0.0.edgebundle").crashes == 2  # type: ignore[union-attr]
    note_clean_stop(tmp_path)  # a clean stop is no crash
    record = note_start(tmp_path, "digits-2.0.0.edgebundle")
    assert record is not None and record.crashes == 2 and record.running
    assert load_probation(tmp_path) == record


def test_a_record_for_another_bundle_is_dropped(tmp_path: Path) -> None:
    save_probation(tmp_path, _record(crashes=2))
    assert note_start(tmp_path, "digits-1.0.0.edgebundle") is None
    assert load_probation(tmp_path) is None


def test_an_unreadable_record_ends_probation(tmp_path: Path) -> None:
    (tmp_path / "probation.json").write_text("{not json")
    assert note_start(tmp_path, "digits-2.0.0.edgebundle") is None


def _store_with_two_versions(state: Path, tmp_path: Path) -> ModelStore:
    store = ModelStore(state)
    for version in ("1.0.0", "2.0.0"):
        src = tmp_path / f"{version}.src"
        src.write_bytes(version.encode() * 50)
        store.activate(store.add(src, "digits", version))
    return store


@pytest.mark.parametrize("crash_starts", [1, 3])
def test_start_up_rolls_back_after_crash_starts_unclean_ends(
    tmp_path: Path, crash_starts: int
) -> None:
    state = tmp_path / "state"
    store = _store_with_two_versions(state, tmp_path)
    save_probation(state, _record())
    policy = HealthPolicy(crash_starts=crash_starts)
    for _ in range(crash_starts - 1):
        assert recover_crash_loop(state, policy) is None
        assert store.current.read_bytes() == b"2.0.0" * 50
    record = recover_crash_loop(state, policy)
    assert record is not None and record.version == "2.0.0" and record.crashes == crash_starts
    assert store.current.read_bytes() == b"1.0.0" * 50
    assert store.versions().previous == "digits-2.0.0.edgebundle"
    assert load_probation(state) is None
    assert recover_crash_loop(state, policy) is None  # and only once


def test_refused_bundles_are_remembered_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "refused-updates.json"
    refused = RefusedBundles(path, limit=3)
    for sha in ("a" * 64, "b" * 64, "c" * 64, "d" * 64):
        refused.add(sha)
    again = RefusedBundles(path, limit=3)
    assert "a" * 64 not in again and all(s * 64 in again for s in "bcd")
    path.write_text("garbage")
    assert "b" * 64 not in RefusedBundles(path)
