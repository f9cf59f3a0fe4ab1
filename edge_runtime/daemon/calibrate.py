"""A short calibration of the loaded model: what ``threads = "auto"`` and
``preprocess_workers = "auto"`` are chosen from.

The model is built at 1 thread and the costs ``edge_runtime.daemon.tuning`` needs are
measured on it: preprocessing a photo-like 1920x1080 JPEG (``Engine.prepare``, what a
camera's request costs) and inference (``Engine.infer``: invoke and post-processing);
then the model is built and timed at 2, 3 and 4 threads (no more than the cores). Past
the time bound ``BUDGET_S`` each figure is one run, and a further thread count is tried
only while the one before it was the fastest yet: a board several times slower than the
reference machine (which can spend the bound on MobileNetV2's 1-thread figures alone) or
a large model still has its thread counts compared, in a few invokes each. The engine
the choice names is the one returned; at most three are alive at once (the 1-thread
build, the fastest build beyond it, the one being timed). A measurement that fails
leaves 1 thread (and a worker per core, at most 2) with a warning: calibration never
stops the daemon. Only the first build may fail the load, as it always did (the model
does not load).
"""

from __future__ import annotations

import io
import logging
import statistics
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

import numpy as np

from edge_runtime.daemon.heap import trim_heap
from edge_runtime.daemon.tuning import (
    FIXED_WORKERS,
    RUNNING_WORKERS,
    Tuning,
    choose,
    default_tuning,
    thread_choices,
)

if TYPE_CHECKING:
    from edge_runtime.inference.engine import Engine, Prepared

log = logging.getLogger(__name__)

#: Seconds the measurements may take, the first build aside; past them each figure is
#: one run, and thread counts are tried only while more threads were faster.
#: MobileNetV2 at 1-2 threads takes about 0.1 s on this project's 2-core reference machine.
BUDGET_S = 0.4
#: Timed runs per figure (the median counts); fewer when the budget runs out.
RUNS = 5
#: The representative request: a camera frame.
SAMPLE_SIZE = (1920, 1080)
#: Standard deviation of the sample's grain, in pixel values (0..255).
GRAIN = 6.0

#: build(threads): the model loaded at that thread count, checked and warmed up
Build = Callable[[int], "Engine"]


def calibrate(
    build: Build,
    *,
    cores: int,
    threads: int | None = None,
    workers: int | None = None,
    running_workers: bool = False,
    budget_s: float = BUDGET_S,
) -> tuple[Engine, Tuning]:
    """The engine to serve and the tuning it runs with. ``threads`` / ``workers`` given
    (numbers from the config) are kept; what is None is chosen. ``running_workers``:
    ``workers`` are the running pipeline's, chosen by an earlier calibration (after a
    model swap), which the reason says instead of the config.

    Raises:
        EdgeError: the model cannot be built at its first thread count.
    """
    given = RUNNING_WORKERS if running_workers else FIXED_WORKERS
    if threads is not None and workers is not None:
        reason = "set in the config"
        if running_workers:
            reason = "threads set in the config; " + given.format(workers)
        return build(threads), Tuning(cores, threads, workers, reason=reason)
    first = threads or 1
    engine = build(first)
    try:
        return _measure(engine, first, build, cores, threads, workers, given, budget_s)
    except Exception as exc:  # noqa: BLE001 - calibration must never stop the daemon
        log.warning(
            "calibration failed (%s: %s); running with %d thread(s)",
            type(exc).__name__,
            exc,
            first,
        )
        why = f"calibration failed: {type(exc).__name__}"
        return engine, default_tuning(cores, why, threads=first, workers=workers)
    finally:
        trim_heap()


def _measure(
    engine: Engine,
    first: int,
    build: Build,
    cores: int,
    threads: int | None,
    workers: int | None,
    workers_given: str,
    budget_s: float,
) -> tuple[Engine, Tuning]:
    """Measure on ``engine`` (built at ``first`` threads) and on builds at more threads;
    the engine chosen (``engine`` is closed when another is), and its tuning (the reason
    words given workers with ``workers_given``). Raises what a measurement raises, with
    ``engine`` open and every other build closed."""
    sample = sample_jpeg()
    deadline = time.perf_counter() + budget_s
    engine.prepare(sample)  # the first call builds lookup tables
    preprocess_ms = _median_ms(lambda: engine.prepare(sample), deadline)
    prepared = engine.prepare(sample)
    invoke_ms = {first: _infer_ms(engine, prepared, deadline)}
    auto = threads is None and engine.delegate != "edgetpu"  # the accelerator runs it
    fastest: tuple[int, Engine] | None = None  # the fastest build beyond the first
    improving = True  # the last count timed was faster than every count before it
    try:
        for k in thread_choices(cores) if auto else ():
            if k in invoke_ms:
                continue
            if not improving and time.perf_counter() > deadline:
                log.info(
                    "calibration: past its time bound, %d threads were no faster than "
                    "fewer; %d and more are not tried",
                    k - 1,
                    k,
                )
                break
            fastest, slower = _faster(fastest, (k, build(k)), invoke_ms, prepared, deadline)
            if slower is not None:
                slower.close()
            improving = invoke_ms[k] < min(ms for j, ms in invoke_ms.items() if j < k)
        tuning = choose(
            cores, preprocess_ms, invoke_ms, workers=workers, workers_given=workers_given
        )
        if fastest is not None and tuning.threads == fastest[0]:
            chosen, fastest = fastest[1], None
        elif tuning.threads == first:
            return engine, tuning
        else:
            chosen = build(tuning.threads)
    finally:
        if fastest is not None:
            fastest[1].close()
    engine.close()
    return chosen, tuning


def _faster(
    fastest: tuple[int, Engine] | None,
    candidate: tuple[int, Engine],
    invoke_ms: dict[int, float],
    prepared: Prepared,
    deadline: float,
) -> tuple[tuple[int, Engine], Engine | None]:
    """Time ``candidate`` (into ``invoke_ms``); the faster of it and ``fastest``, and the
    other engine (to close). The candidate is closed when timing it fails."""
    k, engine = candidate
    try:
        engine.infer(prepared)  # its first run with input data
        invoke_ms[k] = _infer_ms(engine, prepared, deadline)
    except BaseException:
        engine.close()
        raise
    if fastest is None:
        return candidate, None
    if invoke_ms[k] < invoke_ms[fastest[0]]:
        return candidate, fastest[1]
    return fastest, engine


def _infer_ms(engine: Engine, prepared: Prepared, deadline: float) -> float:
    return _median_ms(lambda: engine.infer(prepared), deadline)


def _median_ms(run: Callable[[], object], deadline: float) -> float:
    """The median of up to ``RUNS`` timed calls; one at least, more while time remains."""
    times: list[float] = []
    while len(times) < RUNS and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@lru_cache(maxsize=1)
def sample_jpeg() -> bytes:
    """A photo-like 1920x1080 quality-90 JPEG (no image file ships with the daemon):
    smooth colour shapes with a little grain, made at a quarter of the size and scaled up,
    as costly to decode as a camera photo of that size (within 5% of scikit-image's
    astronaut scaled to 1920x1080, which the benchmarks send); about 30 ms to make. Made
    one plane at a time in float32, its grain from a sine hash rather than a random
    generator: the calibration's peak memory is the full-size image and its encoder."""
    from PIL import Image

    width, height = SAMPLE_SIZE[0] // 4, SAMPLE_SIZE[1] // 4
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    planes = []
    for phase in (0.0, 2.1, 4.2):
        plane = np.sin(x / 23 + phase) * np.cos(y / 15 - phase) + np.sin((x + y) / 57 + phase)
        grain = np.sin(x * 12.9898 + y * 78.233 + phase * 37.0) * 43758.547
        grain -= np.floor(grain)  # uniform on [0, 1): standard deviation 1/sqrt(12)
        plane *= 60
        plane += 128 + (grain - 0.5) * (GRAIN * 12**0.5)
        planes.append(Image.fromarray(np.clip(plane, 0, 255).astype(np.uint8), "L"))
    small = Image.merge("RGB", planes)
    out = io.BytesIO()
    small.resize(SAMPLE_SIZE, Image.Resampling.BICUBIC).save(out, format="JPEG", quality=90)
    return out.getvalue()
