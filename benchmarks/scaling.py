"""The daemon pinned to 1, 2 and 4 cores (those the machine has), against the pipelined
bound measured on the same cores, in each setting of its threads, with JSON requests,
and against the hand-written script and the peer script pinned the same way.

.venv/bin/python -m benchmarks.scaling [--quick] [--bundle B] [--cores 1,2] [--out F]

The daemon runs under ``taskset -c`` on the first c CPUs this process may use; the broker
and the load generator (this process) run on the others, or share the daemon's CPUs when
there are no others, in which case the CPU they were measured to use during the bursts
is taken off the bound. All servers of one core count wait side by side, each on its own
topics, and their bursts take turns, so that a drift of the machine touches each alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.inputs import (
    bundle_model,
    describe,
    mobilenet_bundle,
    normalization_args,
    photo_jpeg,
    resize_mode,
)
from benchmarks.procstat import ThreadSample, add_deltas, per_request
from benchmarks.run import cpu_name, preprocess_ms, print_verdicts, raw_invoke
from benchmarks.scaling_report import report, targets
from benchmarks.subjects import (
    Burst,
    Subject,
    burst,
    daemon_subject,
    script_command,
    script_subject,
    warm_up,
)
from tests.support.mosquitto import Mosquitto

CORE_COUNTS = (1, 2, 4)
#: Interpreter threads and preprocessing workers tried by hand (those <= the cores).
MANUAL = (1, 2)
AUTO = "auto"


@dataclass(frozen=True)
class Pinning:
    """The daemon's CPUs and those of the broker and the load generator."""

    cores: int
    daemon: tuple[int, ...]
    others: tuple[int, ...]

    @property
    def shared(self) -> bool:
        return not set(self.others).isdisjoint(self.daemon)

    def taskset(self) -> tuple[str, ...]:
        return ("taskset", "-c", ",".join(str(c) for c in self.daemon))


def pinnings(cpus: set[int], wanted: tuple[int, ...] = CORE_COUNTS) -> list[Pinning]:
    """One placement per wanted core count the CPUs allow: the daemon on the first c,
    the rest on the others (all of them when none is left)."""
    ordered = tuple(sorted(cpus))
    return [Pinning(c, ordered[:c], ordered[c:] or ordered) for c in wanted if c <= len(ordered)]


@contextlib.contextmanager
def pinned(cpus: tuple[int, ...]) -> Iterator[None]:
    """The calling thread, and the threads and processes it starts, on ``cpus``."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass(frozen=True)
class Sizes:
    count: int  # requests per burst to the daemon and the peer
    baseline_count: int  # the hand-written script is several times slower
    rounds: int
    decode_repeats: int
    invoke_runs: int


FULL = Sizes(300, 100, 3, 30, 200)
QUICK = Sizes(20, 10, 1, 10, 20)


def costs(bundle: Path, image: bytes, pin: Pinning, sizes: Sizes) -> dict[str, Any]:
    """On the daemon's CPUs alone: the decode of one request (``Engine.prepare``) and the
    invoke at each thread count up to the cores (``edge-runtime bench``, mean time)."""
    ks = [k for k in (1, 2, 4) if k <= pin.cores]
    with pinned(pin.daemon):
        decode = preprocess_ms(bundle, {"request": image}, sizes.decode_repeats)["request"]
        rows = raw_invoke(bundle, sizes.invoke_runs, threads=",".join(map(str, ks)))
    return {
        "decode_ms": decode,
        "invoke_ms": {str(r["threads"]): round(1000 / r["throughput_per_s"], 3) for r in rows},
    }


def faster(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The costs measured before and after the bursts, each figure the faster of the two:
    one measurement takes a fraction of a second, and a slow spell of the machine in it
    (seen: a decode 30% slower than minutes before and after) would lower the bound and
    flatter the daemon. Both measurements are kept."""
    return {
        "decode_ms": min(before["decode_ms"], after["decode_ms"]),
        "invoke_ms": {
            k: min(v, after["invoke_ms"].get(k, v)) for k, v in before["invoke_ms"].items()
        },
        "measured": {"before": before, "after": after},
    }


def bound(pin: Pinning, decode_ms: float, invoke_ms: dict[str, float], others: float) -> float:
    """Requests per second the daemon's cores could serve if they never idled and the
    daemon cost nothing beyond decoding and invoking: the cores (less what the broker and
    the load generator took of them) over decode + one-thread invoke, capped by the
    fastest single interpreter (one invoke at a time)."""
    cores = pin.cores - (others if pin.shared else 0.0)
    return min(1000 * cores / (decode_ms + invoke_ms["1"]), 1000 / min(invoke_ms.values()))


def summary(bursts: list[Burst], shared: bool) -> dict[str, Any]:
    """The median burst's throughput, every round's, and CPU per request over all; the
    cores the broker and the load generator used (median burst), and those that other
    work on the machine took of the subject's CPUs (busy time less the subject's, and
    less the broker's and the load generator's where they ``shared`` the CPUs)."""
    answered = sum(b.answered for b in bursts)
    foreign = [
        (b.busy_seconds - b.cpu_seconds - (b.others_cpu_seconds if shared else 0.0))
        / b.wall_seconds
        for b in bursts
    ]
    return {
        "throughput_per_s": statistics.median(b.throughput for b in bursts),
        "rounds_per_s": [b.throughput for b in bursts],
        # a setting that answered nothing FAILs "no request lost"; its figure stays a number
        "cpu_ms_per_request": round(
            1000 * sum(b.cpu_seconds for b in bursts) / max(answered, 1), 3
        ),
        "others_cores": round(
            statistics.median(b.others_cpu_seconds / b.wall_seconds for b in bursts), 3
        ),
        "others_cores_rounds": [round(b.others_cpu_seconds / b.wall_seconds, 3) for b in bursts],
        "other_work_cores": round(max(0.0, statistics.median(foreign)), 3),
        "sent": sum(b.sent for b in bursts),
        "answered": answered,
    }


def setting(threads: int | None, workers: int | None) -> str:
    return AUTO if threads is None else f"threads={threads} workers={workers}"


def start_all(
    stack: contextlib.ExitStack,
    tmp: Path,
    port: int,
    bundle: Path,
    pin: Pinning,
    manual: list[tuple[int, int]],
    script_threads: tuple[int, int],
) -> list[Subject]:
    """Every server of one core count, pinned, each stopped when ``stack`` closes: the
    daemon with no thread settings (auto) and in each ``manual`` (threads, workers), the
    hand-written script and the peer script (with ``script_threads`` interpreter threads).
    In the order their bursts take in each round: the auto daemon and the peer side by
    side, as the closest comparison, the hand-written script last."""
    subjects: list[Subject] = []
    for t, w in [(None, None), *manual]:
        label = AUTO if t is None else f"t{t}w{w}"
        subjects.append(daemon_subject(tmp, port, bundle, pin.taskset(), label, t, w))
        stack.callback(subjects[-1].stop)
    model = bundle_model(bundle, tmp)
    norm = normalization_args(bundle)
    resize = ["--resize", "crop" if resize_mode(bundle) == "crop" else "stretch"]
    for name, n, extra in zip(("baseline", "peer"), script_threads, (norm, norm + resize)):
        topic = f"bench/{name}/infer"
        command = script_command(name, model, port, topic, n) + extra
        subjects.append(script_subject(name, command, pin.taskset(), topic))
        stack.callback(subjects[-1].stop)
    order = [AUTO, "peer", *(f"t{t}w{w}" for t, w in manual), "baseline"]
    return sorted(subjects, key=lambda s: order.index(s.name))


def measure(tmp: Path, bundle: Path, image: bytes, pin: Pinning, sizes: Sizes) -> dict[str, Any]:
    """Everything the run reports for one core count."""
    first = costs(bundle, image, pin, sizes)
    manual = [(t, w) for t in MANUAL for w in MANUAL if t <= pin.cores and w <= pin.cores]
    invoke = first["invoke_ms"]
    fastest = int(min(invoke, key=lambda k: invoke[k]))
    # the peer's one decode thread wants a core of its own where there are several
    peer_threads = int(
        min((k for k in invoke if int(k) <= max(1, pin.cores - 1)), key=lambda k: invoke[k])
    )
    runs: dict[str, list[Burst]] = {}
    json_runs: list[Burst] = []
    threads: dict[int, ThreadSample] = {}
    with pinned(pin.others), Mosquitto(tmp) as broker, contextlib.ExitStack() as stack:
        subjects = start_all(stack, tmp, broker.port, bundle, pin, manual, (fastest, peer_threads))
        for s in subjects:
            warm_up(broker.port, s, image)
        for _ in range(sizes.rounds):
            for s in subjects:
                count = sizes.baseline_count if s.name == "baseline" else sizes.count
                cpus = pin.daemon
                done = burst(broker, s, image, count, cpus, raw=True, per_thread=s.name == AUTO)
                runs.setdefault(s.name, []).append(done)
                if s.name == AUTO:
                    threads = add_deltas(threads, done.threads)
                    json_runs.append(
                        burst(broker, s, image, count, cpus, raw=False, per_thread=False)
                    )
    cost = faster(first, costs(bundle, image, pin, sizes))  # the servers are stopped
    names = {AUTO: AUTO, **{f"t{t}w{w}": setting(t, w) for t, w in manual}}
    daemon = {names[k]: summary(v, pin.shared) for k, v in runs.items() if k in names}
    auto = daemon[AUTO]
    best = max((k for k in daemon if k != AUTO), key=lambda k: daemon[k]["throughput_per_s"])
    limit = bound(pin, cost["decode_ms"], cost["invoke_ms"], auto["others_cores"])
    return {
        "cores": pin.cores,
        "daemon_cpus": list(pin.daemon),
        "broker_and_load_cpus": list(pin.others),
        "shared": pin.shared,
        **cost,
        "others_cores_during_bursts": auto["others_cores"],
        "bound_per_s": round(limit, 2),
        "daemon": auto,
        "json": summary(json_runs, pin.shared),
        "settings": daemon,
        "best_manual": best,
        "baseline": {"threads": fastest, **summary(runs["baseline"], pin.shared)},
        "peer": {"threads": peer_threads, **summary(runs["peer"], pin.shared)},
        "threads": [asdict(r) for r in per_request(threads, auto["answered"])],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a few requests (for a test)")
    ap.add_argument("--out", type=Path, default=Path("scaling-results.json"))
    ap.add_argument("--bundle", type=Path, help="this image model instead of the MobileNetV2")
    ap.add_argument("--cores", default=",".join(map(str, CORE_COUNTS)), help="e.g. 1,2")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers started for the run are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.bundle is not None and not args.bundle.is_file():
        ap.error(f"--bundle {args.bundle}: no such file")
    bundle = args.bundle.resolve() if args.bundle else mobilenet_bundle()
    wanted = tuple(int(c) for c in args.cores.split(","))
    cpus = os.sched_getaffinity(0)
    sizes = QUICK if args.quick else FULL
    image = photo_jpeg("1920x1080")
    results: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cpus": len(cpus)},
        "model": describe(bundle),
        "quick": args.quick,
        "request": "1920x1080 JPEG",
        "by_cores": {},
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        for pin in pinnings(cpus, wanted):
            run = measure(Path(tmpdir), bundle, image, pin, sizes)
            results["by_cores"][str(pin.cores)] = run
            report(run)
    results["targets"] = targets(results["by_cores"])
    args.out.write_text(json.dumps(results, indent=2))
    print_verdicts(results["targets"])
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
