"""``edge-runtime bench``: invoke latency percentiles, throughput and peak RSS.

One configuration runs in this process. Several (``--threads 1,2,4`` or
``--compare-python`` with another venv's interpreter, e.g. one with tflite-runtime) run
each in a fresh process, so peak RSS and library state do not leak between rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.cli.common import add_model_arguments, load_engine, positive_int
from edge_runtime.cli.predict import read_image_file
from edge_runtime.errors import EdgeError
from edge_runtime.inference.backend import get_backend


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure invoke latency, throughput and peak RSS")
    add_model_arguments(p, preprocessing=False, threads=False)
    p.add_argument(
        "--threads", type=_thread_list, default=None, help="N, or a list like 1,2,4 to compare"
    )
    p.add_argument("--runs", type=positive_int, default=100, help="timed invocations (default 100)")
    p.add_argument(
        "--warmup",
        type=positive_int,
        default=10,
        help="untimed invocations first, so one-time set-up stays out of the percentiles "
        "(default 10; the first call is reported on its own)",
    )
    p.add_argument(
        "--image",
        type=Path,
        default=None,
        help="time preprocessing of this image and invoke on it (default: random input)",
    )
    p.add_argument(
        "--compare-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="also run under this Python (another venv's interpreter, e.g. with tflite-runtime)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line per configuration")
    p.set_defaults(handler=run)


def _thread_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,M,..., got {text!r}") from None
    if not values or any(v < 1 or v > 64 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be 1..64, got {text!r}")
    return values


def measure(args: argparse.Namespace, threads: int | None) -> dict[str, Any]:
    args.threads = threads
    engine = load_engine(args)
    tensors = [_sample_tensor(spec.shape, spec.dtype) for spec in engine.inputs]
    pre_ms: list[float] = []
    if args.image is not None:
        data = read_image_file(args.image)
        for _ in range(max(5, args.runs // 5)):
            pre_ms.append(engine.prepare(data).preprocess_ms)
        tensors = [engine.prepare(data).tensor]
    t0 = time.perf_counter()
    engine.run(tensors)  # the first call pays one-time set-up: reported apart
    first_invoke_ms = (time.perf_counter() - t0) * 1000
    for _ in range(args.warmup):
        engine.run(tensors)
    latencies = []
    start = time.perf_counter()
    for _ in range(args.runs):
        t0 = time.perf_counter()
        engine.run(tensors)
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - start
    p50, p90, p99 = (float(v) for v in np.percentile(latencies, [50, 90, 99]))
    row: dict[str, Any] = {
        "model": engine.identity.name,
        "backend": f"{engine.backend} {get_backend(engine.backend).version}",
        "delegate": engine.delegate,
        "threads": threads,
        "runs": args.runs,
        "latency_ms": {"p50": round(p50, 4), "p90": round(p90, 4), "p99": round(p99, 4)},
        "first_invoke_ms": round(first_invoke_ms, 4),
        "throughput_per_s": round(args.runs / elapsed, 2),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if pre_ms:
        row["preprocess_ms_p50"] = round(float(np.median(pre_ms[1:])), 4)
        row["first_preprocess_ms"] = round(pre_ms[0], 4)
    return row


def _ms(value: float) -> str:
    """Milliseconds to three significant digits (0.00830, 1.20, 58.1), whole above 1000."""
    return f"{value:.0f}" if value >= 1000 else f"{value:#.3g}"


#: Printed under the table: why ``predict`` on one image reports more than the percentiles.
FIRST_CALL_NOTE = (
    "first call: one-time set-up such as loading image decoders; left out of the "
    "percentiles (which follow --warmup runs), included in predict's first image"
)


def first_call(row: dict[str, Any]) -> str:
    parts = [f"invoke {_ms(row['first_invoke_ms'])} ms"]
    if "first_preprocess_ms" in row:
        parts.append(f"preprocess {_ms(row['first_preprocess_ms'])} ms")
    return f"first call: {', '.join(parts)}"


def _sample_tensor(shape: tuple, dtype: str) -> np.ndarray:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(np.dtype(dtype))
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def _child(python: str, args: argparse.Namespace, threads: int | None) -> dict[str, Any]:
    cmd = [
        python,
        "-m",
        "edge_runtime.cli.main",
        "bench",
        "--model",
        str(args.model),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--delegate",
        args.delegate,
        "--json",
    ]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if args.image is not None:
        cmd += ["--image", str(args.image)]
    # The project root on the path lets a venv that holds only an interpreter library run it.
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeError(f"bench under {python} failed: {reason}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    row["python"] = python
    return row


def run(args: argparse.Namespace) -> int:
    thread_counts: list[int | None] = list(args.threads) if args.threads else [None]
    pythons = [sys.executable] + list(args.compare_python)
    if len(thread_counts) == 1 and len(pythons) == 1:
        rows = [measure(args, thread_counts[0])]
    else:
        rows = [_child(py, args, n) for py in pythons for n in thread_counts]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    best = max(r["throughput_per_s"] for r in rows)
    heads = ("p50 ms", "p90 ms", "p99 ms", "per s")
    print(
        f"{'backend':22s} {'threads':>7s} "
        + " ".join(f"{h:>8s}" for h in heads)
        + f" {'vs best':>7s} {'peak RSS':>9s}"
    )
    for r in rows:
        lat = r["latency_ms"]
        print(
            f"{r['backend']:22s} {str(r['threads'] or 'default'):>7s} "
            f"{_ms(lat['p50']):>8s} {_ms(lat['p90']):>8s} {_ms(lat['p99']):>8s} "
            f"{r['throughput_per_s']:8.1f} {r['throughput_per_s'] / best:7.2f} "
            f"{r['peak_rss_bytes'] / 2**20:7.1f}MB"
        )
        if "preprocess_ms_p50" in r:
            print(f"{'':22s} preprocess p50 {_ms(r['preprocess_ms_p50'])} ms")
        print(f"{'':22s} {first_call(r)}")
    print(FIRST_CALL_NOTE)
    return 0
