"""The benchmark suite's verdicts: each target passes or fails on the figures it is given."""

from __future__ import annotations

import copy
from typing import Any

from benchmarks.load import switch_gaps
from benchmarks.run import report, targets

BEST = {
    "threads": 2,
    "throughput_per_s": 400.0,
    "peak_rss_bytes": 70 * 2**20,
    "latency_ms": {"p50": 2.5, "p90": 3.0, "p99": 4.0},
}


def _load(throughput: float, p99: float, answered: int = 100) -> dict[str, Any]:
    return {
        "sent": 100,
        "answered": answered,
        "seconds": 1.0,
        "throughput": throughput,
        "latency_ms": {"p50": p99 / 2, "p90": p99 * 0.9, "p99": p99},
    }


GOOD: dict[str, Any] = {
    "machine": {"cpu": "test", "cores": 2, "python": "3.11"},
    "model": "test",
    "raw_invoke": [BEST],
    "preprocess_ms": {"640x480": 2.0, "1920x1080": 5.0},
    "invoke_ms_p50": 2.5,
    "interpreter_alone_rss_bytes": 70 * 2**20,
    "ready_seconds": 0.3,
    "daemon": {
        "threads": 2,
        "saturation": _load(180.0, 300.0),
        "saturation_rounds_per_s": [178.0, 180.0, 181.0],
        "half_load": _load(90.0, 12.0),
        "peak_rss_bytes": 100 * 2**20,
        "disk_bytes_per_answer": 0.0,
    },
    "baseline": {"saturation": _load(30.0, 2000.0)},
    "telemetry_cpu_percent": {"every_5s": 0.3, "hourly": 0.2, "telemetry_only": 0.1},
    "swap": {
        "to_version": "2.0.0",
        "sent": 100,
        "answered": 100,
        "dropped": 0,
        "versions": ["1.0.0", "2.0.0"],
        "pause_ms": 4.0,
        "pause_in_invokes": 1.6,
        "gap_at_switch_ms": 18.0,
        "typical_gap_ms": 14.0,
        "interval_ms": 11.1,
        "longest_gap_in_run_ms": 20.0,
    },
}
GOOD["daemon_by_threads"] = {
    "1": {**GOOD["daemon"], "threads": 1, "saturation": _load(150.0, 350.0)},
    "2": GOOD["daemon"],
}
BOUND = 200.0  # min(400 invoke/s, 1000 / 5 ms preprocessing)


def test_all_targets_pass_on_good_figures(capsys) -> None:  # type: ignore[no-untyped-def]
    verdicts = targets(GOOD, BOUND)
    assert all(v["pass"] for v in verdicts.values()), verdicts
    report({**GOOD, "targets": verdicts}, BOUND)
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS") == len(verdicts)


def test_each_target_fails_on_its_own_bad_figure() -> None:
    cases = {
        "throughput >= 85% of pipelined bound": ("daemon", "saturation", _load(160.0, 300.0)),
        "throughput >= 3x hand-written baseline": ("baseline", "saturation", _load(70.0, 900.0)),
        "p99 at half load <= 2x (preprocess + invoke)": ("daemon", "half_load", _load(90.0, 16.0)),
        "no request lost under load": ("daemon", "saturation", _load(180.0, 300.0, answered=99)),
    }
    for name, (side, key, value) in cases.items():
        bad = copy.deepcopy(GOOD)
        bad[side][key] = value
        verdicts = targets(bad, BOUND)
        assert [n for n, v in verdicts.items() if not v["pass"]] == [name]
    heavy = copy.deepcopy(GOOD)
    heavy["daemon"]["peak_rss_bytes"] = 70 * 2**20 + 41_000_000
    assert not targets(heavy, BOUND)["peak RSS <= interpreter alone + 40 MB"]["pass"]
    for change in ({"dropped": 1}, {"pause_in_invokes": 2.5}, {"versions": ["1.0.0"]}):
        swapped = copy.deepcopy(GOOD)
        swapped["swap"].update(change)
        failed = [n for n, v in targets(swapped, BOUND).items() if not v["pass"]]
        assert failed == ["model swap: 0 dropped, pause <= 2 invokes"], change
    busy = copy.deepcopy(GOOD)
    busy["telemetry_cpu_percent"]["telemetry_only"] = 1.5
    assert not targets(busy, BOUND)["telemetry at 5 s < 1% of a core"]["pass"]


def test_the_swap_pause_is_measured_against_the_runs_own_jitter() -> None:
    """Answers every 10 ms with a 15 ms wait in every 20; the update begins at answer 70
    (waits of 40 ms while it validates) and the switch comes at answer 150 after a 25 ms
    wait. The windows from the update's start to the switch are not the machine's jitter."""
    times, t = [], 0.0
    for i in range(200):
        t += 0.025 if i == 148 else 0.040 if 70 < i < 148 else 0.015 if i % 20 == 5 else 0.010
        times.append(t)
    timeline = [(at, "1.0.0" if i < 150 else "2.0.0") for i, at in enumerate(times)]
    assert switch_gaps(timeline, busy_from=times[70]) == (40.0, 15.0)
    assert switch_gaps(timeline, busy_from=float("inf"))[1] == 40.0  # update windows counted
    assert switch_gaps([(at, "1.0.0") for at in times], times[70]) == (None, None)


def test_more_threads_are_chosen_only_for_a_win_beyond_the_spread() -> None:
    from benchmarks.run import choose_threads

    rounds = {1: [131.4, 156.9, 161.7], 2: [154.9, 158.5, 163.2]}
    assert choose_threads(rounds, {1: 156.9, 2: 158.5}) == 1  # within the spread
    rounds[2] = [165.0, 170.0, 171.0]
    assert choose_threads(rounds, {1: 156.9, 2: 170.0}) == 2
    rounds[4] = [160.0, 170.5, 180.0]
    assert choose_threads(rounds, {1: 156.9, 2: 170.0, 4: 170.5}) == 2
