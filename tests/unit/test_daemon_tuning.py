"""``threads = "auto"`` and ``preprocess_workers = "auto"``: the choice from figures (pure),
and the calibration that measures them on a real model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge_runtime.daemon.app import Daemon, load_tuned
from edge_runtime.daemon.calibrate import calibrate, sample_jpeg
from edge_runtime.daemon.config import parse_config
from edge_runtime.daemon.retune import SAMPLES, LiveRetune
from edge_runtime.daemon.tuning import Tuning, choose, thread_choices
from edge_runtime.errors import ModelError
from edge_runtime.inference.engine import Engine
from tests.conftest import MODELS

MODEL = MODELS / "digits_int8.tflite"


def test_one_core_gets_one_thread_and_one_worker():
    tuning = choose(1, 5.2, {1: 3.9})
    assert (tuning.threads, tuning.preprocess_workers) == (1, 1)
    assert list(thread_choices(1)) == [1]


def test_two_cores_with_a_photo_and_mobilenet_take_one_thread_and_two_workers():
    # the benchmark's figures (benchmarks/README.md): 2 threads, though faster alone,
    # take the core the second decoder needs
    tuning = choose(2, 5.2, {1: 3.9, 2: 2.2})
    assert (tuning.threads, tuning.preprocess_workers) == (1, 2)
    assert "cores-bound" in tuning.reason and "2: " in tuning.reason


def test_a_cheap_decode_and_an_expensive_invoke_take_more_threads():
    tuning = choose(4, 1.0, {1: 20.0, 2: 11.0, 3: 8.0, 4: 6.5})
    assert tuning.threads == 4 and tuning.preprocess_workers == 1
    assert "1: 50/s" in tuning.reason  # 1 thread: the inference worker bounds it


def test_near_ties_go_to_fewer_threads():
    # 2 threads allow 1.5% more: not worth the cores they keep busy
    assert choose(4, 1.0, {1: 10.0, 2: 9.85}).threads == 1
    assert choose(4, 1.0, {1: 10.0, 2: 9.0}).threads == 2


def test_a_costly_decode_gets_a_worker_per_core_at_most():
    tuning = choose(4, 40.0, {1: 2.0, 2: 1.2})
    assert tuning.threads == 1 and tuning.preprocess_workers == 4


def test_fixed_workers_bound_the_choice_and_are_kept():
    tuning = choose(4, 10.0, {1: 8.0, 2: 4.5}, workers=1)
    assert tuning.preprocess_workers == 1 and tuning.threads == 1
    assert "preprocessing-bound" in tuning.reason and "fixed at 1" in tuning.reason


def test_the_telemetry_object_carries_the_figures():
    doc = choose(2, 5.2, {1: 3.9, 2: 2.2}).to_json()
    assert doc["cores"] == 2 and doc["threads"] == 1 and doc["preprocess_workers"] == 2
    assert doc["invoke_ms"] == {"1": 3.9, "2": 2.2} and doc["preprocess_ms"] == 5.2
    assert doc["reason"]


def test_choose_needs_one_figure():
    with pytest.raises(ValueError):
        choose(2, 5.0, {})


# -- calibration on a real model -------------------------------------------------------
class Builds:
    """Builds the digits model at a thread count and keeps every engine made;
    ``refuse`` thread counts whose build fails (as a model that cannot run there)."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.refuse = refuse
        self.made: list[tuple[int, Engine]] = []

    def __call__(self, threads: int) -> Engine:
        if threads in self.refuse:
            raise ModelError(f"no {threads} threads here")
        engine = Engine.load(MODEL, threads=threads)
        engine.warm_up()
        self.made.append((threads, engine))
        return engine

    def open(self) -> list[int]:
        return [k for k, e in self.made if _is_open(e)]


def _is_open(engine: Engine) -> bool:
    try:
        engine.warm_up()
    except ModelError:
        return False
    return True


@pytest.mark.backend
def test_calibration_measures_each_thread_count_and_keeps_only_the_chosen_engine():
    builds = Builds()
    engine, tuning = calibrate(builds, cores=2)
    try:
        assert [k for k, _ in tuning.invoke_ms] == [1, 2]
        assert tuning.preprocess_ms is not None and tuning.preprocess_ms > 0
        assert builds.open() == [tuning.threads] and _is_open(engine)
        assert 1 <= tuning.preprocess_workers <= 2
    finally:
        engine.close()


@pytest.mark.backend
def test_configured_numbers_are_kept_and_nothing_is_measured():
    builds = Builds()
    engine, tuning = calibrate(builds, cores=4, threads=3, workers=2)
    engine.close()
    assert (tuning.threads, tuning.preprocess_workers) == (3, 2) and tuning.invoke_ms == ()
    assert [k for k, _ in builds.made] == [3] and tuning.reason == "set in the config"


@pytest.mark.backend
def test_configured_threads_with_auto_workers_measure_that_count_alone():
    builds = Builds()
    engine, tuning = calibrate(builds, cores=4, threads=2)
    engine.close()
    assert tuning.threads == 2 and [k for k, _ in tuning.invoke_ms] == [2]


@pytest.mark.backend
def test_a_failing_calibration_falls_back_to_one_thread_with_a_warning(caplog):
    builds = Builds(refuse=frozenset({2}))
    with caplog.at_level(logging.WARNING):
        engine, tuning = calibrate(builds, cores=4)
    try:
        assert (tuning.threads, tuning.preprocess_workers) == (1, 2)
        assert "calibration failed" in tuning.reason and "calibration failed" in caplog.text
        assert builds.open() == [1] and _is_open(engine)
    finally:
        engine.close()


@pytest.mark.backend
def test_a_model_that_does_not_load_still_fails_the_load():
    with pytest.raises(ModelError):
        calibrate(Builds(refuse=frozenset({1})), cores=2)


@pytest.mark.backend
def test_a_time_bound_spent_at_one_thread_still_compares_thread_counts():
    """A board several times slower than the reference machine (which can spend the
    bound on MobileNetV2's 1-thread figures alone) or a large model: 2 threads are still
    built and timed, and each further count while the one before it was the fastest yet;
    past the bound each figure is one run."""
    builds = Builds()
    engine, tuning = calibrate(builds, cores=4, budget_s=0.0)
    try:
        counts = [k for k, _ in tuning.invoke_ms]
        assert counts[:2] == [1, 2] and counts == list(range(1, len(counts) + 1))
        invoke = dict(tuning.invoke_ms)
        for k in counts[2:]:  # tried because k - 1 was faster than every count before it
            assert invoke[k - 1] < min(invoke[j] for j in range(1, k - 1))
        assert builds.open() == [tuning.threads] and _is_open(engine)
    finally:
        engine.close()


@pytest.mark.backend
def test_load_tuned_keeps_the_given_workers_as_after_a_model_swap(tmp_path: Path):
    config = parse_config(
        {"device_id": "pi-01", "state_dir": str(tmp_path), "model": {"path": str(MODEL)}}
    )
    engine, tuning = load_tuned(config, MODEL, workers=1)
    engine.close()
    assert tuning.preprocess_workers == 1 and tuning.invoke_ms


@pytest.mark.backend
@pytest.mark.parametrize(
    ("threads", "workers", "said"),
    [
        # the running workers were chosen by the calibration at start: kept, not "fixed"
        ("auto", "auto", "; the 1 running workers kept"),
        (1, "auto", "threads set in the config; the 1 running workers kept"),
        # the config's own numbers
        ("auto", 1, "; workers fixed at 1"),
        (1, 1, "set in the config"),
    ],
)
def test_after_a_model_swap_the_reason_says_where_the_workers_came_from(
    tmp_path: Path, threads: object, workers: object, said: str
):
    config = parse_config(
        {
            "device_id": "pi-01",
            "state_dir": str(tmp_path),
            "model": {"path": str(MODEL), "threads": threads},
            "requests": {"preprocess_workers": workers},
        }
    )
    engine, tuning = load_tuned(config, MODEL, workers=1)  # as _swap_model calls it
    engine.close()
    assert tuning.reason.endswith(said), tuning.reason


def test_the_sample_is_a_1920x1080_jpeg():
    import io

    from PIL import Image

    with Image.open(io.BytesIO(sample_jpeg())) as image:
        assert image.format == "JPEG" and image.size == (1920, 1080)


def test_making_the_sample_allocates_little_beside_its_image():
    """The sample is made one plane at a time in float32 (numpy's share of the peak:
    10.7 MiB when it was made at once in float64 with a random generator, 2.7 now); the
    full-size image and the encoder (Pillow's, not traced here) are the rest."""
    import tracemalloc

    sample_jpeg.cache_clear()
    tracemalloc.start()
    try:
        sample_jpeg()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_calibration_gives_the_heap_back(monkeypatch):
    """What the calibration freed is returned to the system (glibc's malloc_trim), not
    kept resident for the life of the daemon."""
    from edge_runtime.daemon import calibrate as module

    trims: list[int] = []
    monkeypatch.setattr(module, "trim_heap", lambda: trims.append(1))
    engine, _ = calibrate(Builds(), cores=1)
    engine.close()
    assert trims == [1]
    module.trim_heap()  # the real one runs (or does nothing off glibc) without raising


def test_a_tuning_without_figures_reports_nulls():
    doc = Tuning(1, 1, 1, reason="set in the config").to_json()
    assert doc["invoke_ms"] == {} and doc["preprocess_ms"] is None


# -- chosen again from the requests served ------------------------------------------------
CALIBRATED = Tuning(
    2, 1, 2, invoke_ms=((1, 3.4), (2, 2.2)), preprocess_ms=4.1, reason="photo-like sample"
)


def test_small_requests_served_choose_more_threads_once():
    retune = LiveRetune(CALIBRATED, samples=10)
    for _ in range(9):
        retune.observe(0.3)
    retune.observe(0.0)  # an input given as a tensor: not counted
    assert retune.due() is None
    retune.observe(0.3)
    again = retune.due()
    assert again is not None and again.threads == 2 and again.preprocess_workers == 2
    assert again.preprocess_ms == 0.3 and "median 0.30 ms, calibrated 4.10 ms" in again.reason
    # the workers were chosen by the calibration: kept as they run, not "fixed"
    assert "the 2 running workers kept" in again.reason and "fixed" not in again.reason
    retune.observe(0.3)
    assert retune.due() is None  # once per calibration


def test_requests_like_the_sample_change_nothing():
    retune = LiveRetune(CALIBRATED, samples=5)
    for ms in (3.8, 4.4, 5.0, 4.0, 4.3):
        retune.observe(ms)
    assert retune.due() is None


def test_only_a_choice_among_thread_counts_is_followed_and_reset_starts_again():
    fixed = Tuning(2, 2, 2, invoke_ms=((2, 2.2),), preprocess_ms=4.1, reason="set threads")
    retune = LiveRetune(fixed, samples=1)
    retune.observe(0.3)
    assert retune.due() is None
    retune.reset(CALIBRATED)
    retune.observe(0.3)
    assert retune.due() is not None


@pytest.mark.backend
def test_the_daemon_swaps_in_the_model_at_the_thread_count_chosen_again(tmp_path: Path):
    config = parse_config(
        {
            "device_id": "pi-test",
            "state_dir": str(tmp_path / "state"),
            "model": {"path": str(MODEL)},
            "mqtt": {"host": "127.0.0.1", "port": 1},
        }
    )
    engine = Engine.load(MODEL, threads=1)
    daemon = Daemon(config, engine, tuning=CALIBRATED)
    try:
        daemon.retune_if_due()
        assert daemon.pipeline.engine is engine  # nothing seen yet
        for _ in range(SAMPLES):
            daemon.retune.observe(0.3)
        daemon.retune_if_due()
        assert daemon.tuning.threads == 2 and "re-chosen" in daemon.tuning.reason
        swapped = daemon.pipeline.engine
        assert swapped is not engine and daemon.engine is swapped
        assert swapped.identity == engine.identity
        assert swapped.predict(sample_jpeg()).top  # the new engine serves
    finally:
        daemon.outbox.close()
        daemon.engine.close()
        engine.close()
