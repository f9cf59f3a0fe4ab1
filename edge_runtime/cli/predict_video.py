"""``edge-runtime predict`` on a video file or stream URL: one line per processed frame.

Frames are read as a ``[[sources]]`` source reads them (decoded at about the model's
size, prepared as images are). ``--fps`` samples the stream (a file then plays at its
own rate, as a camera would); without it a file is read as fast as it decodes and every
frame is run. ``--frames N`` stops after N processed frames."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_runtime.errors import InputError
from edge_runtime.inference.serialize import prediction_to_dict
from edge_runtime.inference.types import DetectionSettings, Prediction
from edge_runtime.sources.frames import SourceError
from edge_runtime.sources.open import open_reader
from edge_runtime.sources.prepare import prepare_frame, sizing

#: File names read as video rather than as an image.
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mkv", ".avi", ".mov", ".webm", ".h264", ".264", ".ts", ".mjpeg", ".mjpg", ".m4v"}
)


def is_video(arg: str) -> bool:
    """A stream URL, a camera, or a file with a video suffix."""
    return (
        "://" in arg or arg.startswith("picamera2:") or Path(arg).suffix.lower() in VIDEO_SUFFIXES
    )


def _url(arg: str) -> str:
    if "://" in arg or arg.startswith("picamera2:"):
        return arg
    path = Path(arg)
    if not path.is_file():
        raise InputError(f"{arg}: no such file")
    return "file://" + str(path.resolve())


def predict_video(
    engine: Any,
    arg: str,
    *,
    fps: float,
    frames: int | None,
    top_k: int,
    settings: DetectionSettings,
    as_json: bool,
) -> int:
    """Run the model on the frames of ``arg``; returns how many were processed.

    Raises:
        InputError: it cannot be opened or read (one line naming it).
    """
    spec = engine.input_spec
    try:
        reader = open_reader(
            _url(arg), sizing(lambda: spec), gray=spec.channels == 1, paced=fps > 0
        )
    except SourceError as exc:
        raise InputError(f"{arg}: {exc.detail}") from exc
    interval = 1.0 / fps if fps > 0 else 0.0
    due, index, done = 0.0, 0, 0
    try:
        for frame in reader.frames():
            index += 1
            now = time.monotonic()
            if interval and now < due:
                continue
            due = max(due + interval, now - interval)
            prediction = engine.infer(
                prepare_frame(frame.decoded(), spec), top_k=top_k, detection=settings
            )
            print(_line(arg, index, prediction, as_json), flush=True)
            done += 1
            if frames is not None and done >= frames:
                break
    except SourceError as exc:
        raise InputError(f"{arg}: {exc.detail}") from exc
    finally:
        reader.close()
    return done


def _line(arg: str, index: int, prediction: Prediction, as_json: bool) -> str:
    if as_json:
        return json.dumps({**prediction_to_dict(prediction, image=arg), "frame_index": index})
    ms = prediction.timings.invoke_ms
    if prediction.kind == "detection":
        found = ", ".join(f"{d.label or d.index} {d.score:.3f}" for d in prediction.detections)
        return f"{arg} frame {index}: {len(prediction.detections)} detections ({found}) {ms:.1f} ms"
    if prediction.kind == "classification" and prediction.top:
        top = prediction.top[0]
        label = f"{top.index} {top.label}" if top.label else str(top.index)
        return f"{arg} frame {index}: {label} {top.score:.3f} ({ms:.1f} ms)"
    return f"{arg} frame {index}: {ms:.1f} ms"
