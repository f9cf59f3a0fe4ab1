"""When an update that failed for a passing reason is tried again."""

from __future__ import annotations

from edge_runtime.update.service import RETRY_CAP, next_retry


def test_the_wait_starts_at_the_interval_and_doubles_for_the_same_bundle() -> None:
    first = next_retry(None, "aa", b"notice", 60.0, now=1000.0)
    assert first.attempt == 0 and first.payload == b"notice"
    assert 1030.0 <= first.due < 1060.0  # the interval, less up to half of it as jitter
    second = next_retry(first, "aa", b"notice", 60.0, now=2000.0)
    assert second.attempt == 1 and 2060.0 <= second.due < 2120.0
    third = next_retry(second, "aa", b"notice", 60.0, now=3000.0)
    assert third.attempt == 2 and 3120.0 <= third.due < 3240.0


def test_another_bundle_starts_over() -> None:
    old = next_retry(None, "aa", b"a", 60.0, now=0.0)
    old = next_retry(old, "aa", b"a", 60.0, now=0.0)
    new = next_retry(old, "bb", b"b", 60.0, now=0.0)
    assert new.attempt == 0 and new.sha256 == "bb" and 30.0 <= new.due < 60.0


def test_the_wait_stops_growing_at_the_cap_unless_the_interval_is_longer() -> None:
    retry = None
    for _ in range(40):
        retry = next_retry(retry, "aa", b"a", 60.0, now=0.0)
    assert retry is not None and retry.due < RETRY_CAP
    long = next_retry(None, "aa", b"a", 2 * RETRY_CAP, now=0.0)
    assert RETRY_CAP <= long.due < 2 * RETRY_CAP
