"""What the scaling run measures, each as a process on the cores it is given: the daemon
(one per setting, each with a device id of its own so that several wait side by side),
the hand-written script and the peer script; and one saturating burst of requests against
any of them, with the CPU time that it, the broker and the load generator spent on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmarks.inputs import ROOT
from benchmarks.load import LoadDriver
from benchmarks.procstat import (
    ThreadSample,
    busy_seconds,
    cpu_seconds,
    thread_deltas,
    thread_samples,
)
from benchmarks.run import start_daemon
from tests.support.mosquitto import Mosquitto


@dataclass(frozen=True)
class Subject:
    """A server under test: its process, topics, and how to end it."""

    name: str
    pid: int
    request_topic: str
    answer_topic: str
    alive: Callable[[], bool]
    stop: Callable[[], object]


@dataclass(frozen=True)
class Burst:
    """``sent`` requests published at once; first publish to last answer."""

    sent: int
    answered: int
    seconds: float
    throughput: float
    cpu_seconds: float  # the subject's process, all its threads
    others_cpu_seconds: float  # the broker and the load generator (this process)
    wall_seconds: float  # the interval the CPU times cover
    busy_seconds: float  # the subject's CPUs, on anything (other work on the machine too)
    threads: dict[int, ThreadSample]  # per thread of the subject, when asked for


def daemon_subject(
    tmp: Path,
    port: int,
    bundle: Path,
    wrap: tuple[str, ...],
    label: str,
    threads: int | None,
    workers: int | None,
) -> Subject:
    """The daemon with ``threads`` interpreter threads and ``workers`` preprocessing
    workers; None leaves the key out of the config, so the daemon chooses."""
    device = f"bench-{label}"
    # A burst queues every request at once: they wait for room rather than be refused
    # (queue_full) on a machine that other work slows. A request waits at most a third
    # of the keepalive, which the tests' config keeps at 10 s.
    requests: dict[str, object] = {"queue_wait": 30.0}
    if workers is not None:
        requests["preprocess_workers"] = workers
    daemon, _ = start_daemon(
        tmp,
        port,
        bundle,
        threads,
        30.0,
        requests=requests,
        device=device,
        wrap=wrap,
        mqtt={"keepalive": 90},
    )
    return Subject(
        label,
        daemon.proc.pid,
        f"edge/{device}/infer",
        f"edge/{device}/predictions",
        daemon.alive,
        daemon.terminate,
    )


def script_subject(label: str, command: list[str], wrap: tuple[str, ...], topic: str) -> Subject:
    """A script that serves ``topic`` and prints ``ready`` once connected (the baseline
    and the peer); its answers go to the topic's sibling ``predictions``."""
    proc = subprocess.Popen([*wrap, *command], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait(10)
        raise RuntimeError(f"{label} did not start: {' '.join(command)}")

    def stop() -> int:
        proc.terminate()
        return proc.wait(10)

    return Subject(
        label,
        proc.pid,
        topic,
        topic.rsplit("/", 1)[0] + "/predictions",
        lambda: proc.poll() is None,
        stop,
    )


def script_command(script: str, model: Path, port: int, topic: str, threads: int) -> list[str]:
    """``python -m benchmarks.<script>`` serving ``topic`` with ``model``."""
    return [
        sys.executable,
        "-m",
        f"benchmarks.{script}",
        "--port",
        str(port),
        "--model",
        str(model),
        "--topic",
        topic,
        "--threads",
        str(threads),
    ]


def warm_up(port: int, subject: Subject, image: bytes, tries: int = 10) -> None:
    """A few requests until all are answered: the server is subscribed and its first,
    slower, invokes are behind it."""
    for _ in range(tries):
        driver = LoadDriver(port, subject.request_topic, subject.answer_topic)
        try:
            done = driver.run(image, 3, None, 5, alive=subject.alive)
        finally:
            driver.close()
        if done.answered == done.sent:
            return
    raise RuntimeError(f"{subject.name} answered no warm-up burst in full")


def burst(
    broker: Mosquitto,
    subject: Subject,
    image: bytes,
    count: int,
    cpus: tuple[int, ...],
    *,
    raw: bool,
    per_thread: bool,
) -> Burst:
    """``count`` requests at once (raw JPEG bytes, or JSON ``{"id", "image_b64"}``),
    through a load driver of its own so that no other driver reads the answers, to a
    subject running on ``cpus``; those
    not answered within 30 s and 0.1 s a request of the last publish count as lost."""
    driver = LoadDriver(broker.port, subject.request_topic, subject.answer_topic, raw=raw)
    me, broker_pid = os.getpid(), broker.pid
    if broker_pid is None:
        raise RuntimeError("the broker is not running")
    try:
        threads_before = thread_samples(subject.pid) if per_thread else {}
        cpu = cpu_seconds(subject.pid)
        others = cpu_seconds(broker_pid) + cpu_seconds(me)
        busy = busy_seconds(cpus)
        start = time.monotonic()
        result = driver.run(image, count, None, 30.0 + 0.1 * count, alive=subject.alive)
        wall = time.monotonic() - start
        cpu = cpu_seconds(subject.pid) - cpu
        others = cpu_seconds(broker_pid) + cpu_seconds(me) - others
        busy = busy_seconds(cpus) - busy
        threads = thread_deltas(threads_before, thread_samples(subject.pid)) if per_thread else {}
    finally:
        driver.close()
    return Burst(
        result.sent,
        result.answered,
        result.seconds,
        result.throughput,
        round(cpu, 3),
        round(others, 3),
        round(wall, 3),
        round(busy, 3),
        threads,
    )
