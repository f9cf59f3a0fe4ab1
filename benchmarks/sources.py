"""A camera source at 1920x1080, 30 fps, H.264: what ``[[sources]]`` costs and keeps up.

.venv/bin/python -m benchmarks.sources [--model M] [--seconds 60] [--clip-seconds 10]
    [--size 1920x1080] [--codec h264|mjpeg] [--rss-every S] [--json]

A clip made from scikit-image photos (1920x1080, 30 fps, H.264 unless ``--size`` and
``--codec`` say otherwise: an IP camera's sub-stream, a USB webcam's MJPEG) is played as
a looping ``file://`` source (paced at its own rate, as a camera) through the daemon's
own path: the source's capture and control threads, the request pipeline and the engine.

- ``fps = 0``: frames processed per second against the smaller of the stream's rate
  (30 fps, or less when decoding alone is slower) and the model's invoke rate; target
  ratio >= 0.85.
- ``fps = 5``: capture-to-publish p50/p99 against one frame's decode + preprocess +
  invoke (target p99 <= 2x), the process's CPU time per processed frame, and the RSS
  growth over the run (the issue asks 10 minutes: ``--seconds 600``; target < 5 MiB).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

from benchmarks.run import cpu_name
from edge_runtime.daemon.config import SourceConfig
from edge_runtime.daemon.pipeline import Pipeline
from edge_runtime.daemon.requests import Request
from edge_runtime.inference.engine import Engine
from edge_runtime.sources.ffmpeg import FfmpegReader
from edge_runtime.sources.manager import route_frames
from edge_runtime.sources.prepare import prepare_frame, sizing
from edge_runtime.sources.worker import Emitter, SourceWorker
from edge_runtime.telemetry.stats import Tally

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "tests" / "fixtures" / "models" / "slow_int8.tflite"
WIDTH, HEIGHT, RATE = 1920, 1080, 30
#: --codec: (FFmpeg encoder, its options, pixel format, what the stream is called)
CODECS = {
    "h264": ("libx264", {"preset": "veryfast", "g": "60"}, "yuv420p", "H.264"),
    "mjpeg": ("mjpeg", {"q:v": "5"}, "yuvj420p", "MJPEG"),  # a USB webcam's usual stream
}


def make_clip(
    path: Path, seconds: float, width: int = WIDTH, height: int = HEIGHT, codec: str = "h264"
) -> Path:
    """A ``width`` x ``height`` 30 fps clip (H.264, or MJPEG) from scikit-image's photos,
    a slow pan over each."""
    av: Any = importlib.import_module("av")  # untyped libraries
    data: Any = importlib.import_module("skimage.data")

    pan = width // 12
    photos = [
        Image.fromarray(np.asarray(p)).convert("RGB").resize((width + pan, height + pan * 9 // 16))
        for p in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket())
    ]
    encoder, options, pix_fmt, _ = CODECS[codec]
    frames = int(seconds * RATE)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(encoder, rate=RATE, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = Fraction(1, RATE)
        for n in range(frames):
            photo = photos[(n * len(photos)) // frames]
            x = (n * 2) % pan
            frame = av.VideoFrame.from_image(photo.crop((x, 0, x + width, height)))
            frame.pts = n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_rate(url: str, engine: Engine, frames: int = 150) -> tuple[float, float]:
    """Frames decoded (and scaled to the model's size) per second, unpaced; and the
    mean preprocess ms (frame to tensor)."""
    spec = engine.input_spec
    reader = FfmpegReader(url, sizing(lambda: spec), gray=spec.channels == 1, paced=False)
    start, n, prep = time.perf_counter(), 0, 0.0
    for frame in reader.frames():
        decoded = frame.decoded()  # scaled and converted: part of decoding here
        t = time.perf_counter()
        prepare_frame(decoded, spec)
        prep += time.perf_counter() - t
        n += 1
        if n >= frames:
            break
    reader.close()
    spent = time.perf_counter() - start - prep
    return n / spent, prep / max(n, 1) * 1000


def invoke_rate(engine: Engine, runs: int = 30) -> float:
    engine.warm_up()
    start = time.perf_counter()
    for _ in range(runs):
        engine.warm_up()
    return runs / (time.perf_counter() - start)


class Count(Emitter):
    def __init__(self) -> None:
        self.published = 0

    def prediction(self, name: str, doc: dict[str, Any]) -> None:
        self.published += 1

    def state(self, name: str, state: str, detail: str) -> None:
        pass

    def snapshot(self, name: str, jpeg: bytes) -> None:
        pass


def stream(
    engine: Engine,
    url: str,
    fps: float,
    seconds: float,
    rss_every: float = 0.0,
    warmup: float | None = None,
) -> dict[str, Any]:
    """Run one looping source for ``seconds`` after ``warmup`` seconds (default: a
    quarter of ``seconds``, at most 5) in which the decoder's threads and buffer pools
    fill; its counts, latencies, CPU and RSS (and, with ``rss_every``, the RSS sampled
    every that many seconds, in MiB) over the ``seconds``."""
    spec = engine.input_spec
    pipeline = Pipeline(
        engine,
        queue_size=16,
        max_pixels=40_000_000,
        top_k=5,
        answer=route_frames(lambda batch: None),
        tally=Tally(1000),
    )
    pipeline.start()
    emit = Count()
    worker = SourceWorker(
        SourceConfig("bench", url, fps=fps, loop=True),
        opener=lambda: FfmpegReader(url, sizing(lambda: spec), gray=spec.channels == 1),
        to_request=lambda frame, rid: Request(rid, b"", prepared=prepare_frame(frame, spec)),
        submit=pipeline.submit,
        emit=emit,
    )
    proc = psutil.Process()
    worker.start()
    time.sleep(min(5.0, seconds / 4) if warmup is None else warmup)
    rss0, cpu0 = proc.memory_info().rss, sum(proc.cpu_times()[:2])
    n0, t0 = worker.stats()["processed"], time.monotonic()
    samples = [round(rss0 / 2**20, 1)]
    while (left := t0 + seconds - time.monotonic()) > 0:
        time.sleep(min(left, rss_every) if rss_every > 0 else left)
        samples.append(round(proc.memory_info().rss / 2**20, 1))
    n1, t1 = worker.stats()["processed"], time.monotonic()
    rss1, cpu1 = proc.memory_info().rss, sum(proc.cpu_times()[:2])
    stats = worker.stats()
    worker.stop(5)
    pipeline.stop(5)
    done = n1 - n0
    return {
        "fps": fps,
        "seconds": round(t1 - t0, 1),
        "processed_fps": round(done / (t1 - t0), 2),
        "frames_in": stats["frames_in"],
        "dropped": stats["dropped"],
        "capture_to_publish_ms": stats["latency_ms"],
        "cpu_ms_per_frame": round((cpu1 - cpu0) / max(done, 1) * 1000, 1),
        "cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2),
        "rss_growth_mib": round((rss1 - rss0) / 2**20, 2),
        **({"rss_mib_every": rss_every, "rss_mib": samples} if rss_every > 0 else {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--seconds", type=float, default=60.0, help="each run's length")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="the stream's WxH")
    p.add_argument("--codec", choices=sorted(CODECS), default="h264")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--rss-every", type=float, default=0.0, help="sample RSS every S seconds (0: start, end)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds each run streams before it is measured (default: min(5, seconds/4))",
    )
    p.add_argument(
        "--runs",
        choices=("both", "fps0", "fps5"),
        default="both",
        help="which runs: fps = 0, fps = 5 or both (a 10-minute RSS run needs only fps5)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    engine = Engine.load(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        width, height = (int(v) for v in args.size.lower().split("x"))
        suffix = ".mp4" if args.codec == "h264" else ".mkv"
        clip = make_clip(Path(tmp) / f"clip{suffix}", args.clip_seconds, width, height, args.codec)
        url = f"file://{clip}"
        decode_fps, prep_ms = decode_rate(url, engine)
        invoke_fps = invoke_rate(engine)
        bound = min(RATE, decode_fps, invoke_fps)
        full = (
            stream(engine, url, 0.0, args.seconds, args.rss_every, args.warmup)
            if args.runs != "fps5"
            else None
        )
        five = (
            stream(engine, url, 5.0, args.seconds, args.rss_every, args.warmup)
            if args.runs != "fps0"
            else None
        )
    frame_ms = 1000 / decode_fps + prep_ms + 1000 / invoke_fps
    result: dict[str, Any] = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores ({platform.machine()})",
        "model": args.model.name,
        "stream": f"{width}x{height} {RATE} fps {CODECS[args.codec][3]}",
        "decode_only_fps": round(decode_fps, 1),
        "preprocess_ms": round(prep_ms, 3),
        "invoke_fps": round(invoke_fps, 1),
    }
    targets: dict[str, bool] = {}
    if full is not None:
        ratio = full["processed_fps"] / bound
        result["fps0"] = {**full, "bound_fps": round(bound, 1), "ratio": round(ratio, 3)}
        targets[f"fps=0: processed / bound {ratio:.3f} >= 0.85"] = ratio >= 0.85
    if five is not None:
        p99 = five["capture_to_publish_ms"]["p99"]
        p99_ratio = None if p99 is None else p99 / frame_ms
        result["fps5"] = {
            **five,
            "decode_preprocess_invoke_ms": round(frame_ms, 1),
            "p99_ratio": None if p99_ratio is None else round(p99_ratio, 2),
        }
        targets[f"fps=5: capture-to-publish p99 / frame work {p99_ratio or 0:.2f} <= 2"] = (
            p99_ratio is not None and p99_ratio <= 2
        )
        growth = five["rss_growth_mib"]
        targets[f"fps=5: RSS growth {growth} MiB over {five['seconds']} s < 5 MiB"] = growth < 5
    result["targets"] = targets
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['stream']} on {result['machine']}, model {result['model']}")
    print(f"decode only (scaled to the model): {decode_fps:.1f} fps; invoke: {invoke_fps:.1f}/s")
    f0 = result.get("fps0")
    if f0 is not None:
        print(
            f"fps=0: {f0['processed_fps']} frames/s processed, bound {f0['bound_fps']} "
            f"-> ratio {f0['ratio']} (target >= 0.85); dropped {f0['dropped']}; "
            f"{f0['cpu_ms_per_frame']} ms CPU per frame"
        )
    f5 = result.get("fps5")
    if f5 is not None:
        print(
            f"fps=5: capture-to-publish p50 {f5['capture_to_publish_ms']['p50']} ms, "
            f"p99 {f5['capture_to_publish_ms']['p99']} ms against decode+preprocess+invoke "
            f"{f5['decode_preprocess_invoke_ms']} ms (ratio {f5['p99_ratio']}, target <= 2); "
            f"{f5['cpu_ms_per_frame']} ms CPU per processed frame ({f5['cpu_cores']} cores); "
            f"RSS growth {f5['rss_growth_mib']} MiB over {f5['seconds']} s"
        )
    print("targets:")
    for name, ok in targets.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
