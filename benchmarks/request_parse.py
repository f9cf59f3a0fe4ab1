"""What parsing an ``infer`` payload costs: raw JPEG bytes against JSON
``{"id", "image_b64"}``, with and without an id in the JSON and MQTT 5 correlation data.

For each form: the median time of ``parse_request`` over many runs, and the peak memory
it allocates (``tracemalloc``), counted in copies of the image. The request is
scikit-image's astronaut photo as a 1920x1080 quality-90 JPEG (about 1 MB; 1.3 MB as
base64). A parse is judged against the work the request brings anyway: decoding and
resizing that JPEG for the MobileNetV2 benchmark model (``Engine.prepare``), so
"JSON per request" is (prepare + raw parse) / (prepare + JSON parse), the throughput a
daemon bound by that work keeps when clients send JSON.

    .venv/bin/python -m benchmarks.request_parse [--runs 60] [--binascii]

The base64 text is decoded by pybase64 where it is installed (it is optional), else by
binascii, a few times slower per request form (``--binascii`` measures that).

Timings on a shared machine are noisy: the forms are measured interleaved, round after
round, and medians compared.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

from benchmarks.inputs import mobilenet_bundle, photo_jpeg
from edge_runtime import b64json
from edge_runtime.daemon.requests import parse_request

#: Targets: JSON keeps this share of raw's per-request throughput, and parsing JSON
#: allocates at most this many copies of the image (the decoded image is one).
PER_REQUEST_TARGET = 0.95
COPIES_TARGET = 1.25
MAX_BYTES = 8 << 20
CORRELATION = b"c-0001"


def forms(jpeg: bytes) -> dict[str, tuple[bytes, bytes | None]]:
    """Each payload form: (payload, correlation data)."""
    b64 = base64.b64encode(jpeg).decode("ascii")
    with_id = json.dumps({"id": "req-0001", "image_b64": b64}).encode()
    without_id = json.dumps({"image_b64": b64}).encode()
    return {
        "raw + correlation": (jpeg, CORRELATION),
        "raw": (jpeg, None),
        "json id": (with_id, None),
        "json id + correlation": (with_id, CORRELATION),
        "json": (without_id, None),
        "json + correlation": (without_id, CORRELATION),
    }


def parser(payload: bytes, correlation: bytes | None) -> Callable[[], object]:
    return lambda: parse_request(payload, max_bytes=MAX_BYTES, correlation_data=correlation)


def peak_bytes(run: Callable[[], object]) -> int:
    """Peak bytes allocated while ``run`` runs (its result included)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - base


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60, help="rounds of each form (default 60)")
    ap.add_argument(
        "--binascii", action="store_true", help="decode with binascii even where pybase64 is"
    )
    args = ap.parse_args(argv)
    if args.binascii:
        b64json.fast_decoder = None

    from edge_runtime.inference.engine import Engine

    jpeg = photo_jpeg("1920x1080")
    engine = Engine.load(mobilenet_bundle(), delegate="cpu", threads=1)
    cases = {name: parser(p, c) for name, (p, c) in forms(jpeg).items()}
    for run in cases.values():  # every form parses, to the same image
        request = run()
        assert getattr(request, "image", None) == jpeg
    times: dict[str, list[float]] = {name: [] for name in cases}
    prepare: list[float] = []
    for _ in range(max(1, args.runs)):  # interleaved: the machine's noise hits all alike
        prepare.append(timed(lambda: engine.prepare(jpeg)))
        for name, run in cases.items():
            times[name].append(timed(run))
    median = {name: statistics.median(t) for name, t in times.items()}
    work = statistics.median(prepare)
    copies = {name: peak_bytes(run) / len(jpeg) for name, run in cases.items()}

    print(f"image: 1920x1080 JPEG, {len(jpeg)} bytes; prepare (decode + resize) {work:.2f} ms")
    print(f"base64: {'binascii' if b64json.fast_decoder is None else 'pybase64'}")
    print(f"{'form':<24}{'parse ms':>10}{'vs raw':>9}{'per request':>13}{'copies':>8}")
    for name in cases:
        raw = "raw + correlation" if "correlation" in name else "raw"
        ratio = median[name] / max(median[raw], 1e-6)
        keeps = (work + median[raw]) / (work + median[name])
        print(f"{name:<24}{median[name]:>10.3f}{ratio:>8.1f}x{keeps:>13.3f}{copies[name]:>8.2f}")

    failed = False
    for name in cases:
        if not name.startswith("json"):
            continue
        raw = "raw + correlation" if "correlation" in name else "raw"
        keeps = (work + median[raw]) / (work + median[name])
        ok = keeps >= PER_REQUEST_TARGET
        failed |= not ok
        print(
            f"{'PASS' if ok else 'FAIL'} {name}: per-request throughput {keeps:.3f} of raw "
            f"(target >= {PER_REQUEST_TARGET})"
        )
        ok = copies[name] <= COPIES_TARGET
        failed |= not ok
        print(
            f"{'PASS' if ok else 'FAIL'} {name}: {copies[name]:.2f} copies of the image "
            f"allocated while parsing (target <= {COPIES_TARGET})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
