"""``edge-runtime predict``: classify or detect on image files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_runtime.cli.common import (
    add_model_arguments,
    fraction,
    load_engine,
    positive_int,
)
from edge_runtime.cli.predict_text import format_prediction
from edge_runtime.cli.predict_video import is_video, predict_video
from edge_runtime.errors import InputError
from edge_runtime.inference.preprocess import DEFAULT_MAX_PIXELS
from edge_runtime.inference.serialize import prediction_to_dict
from edge_runtime.inference.types import DEFAULT_DETECTION, DetectionSettings

#: Image files larger than this are refused before reading (a 50 MP JPEG is ~25 MB).
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("predict", help="run the model on image files")
    add_model_arguments(p)
    p.add_argument("--top-k", type=positive_int, default=5, help="classes shown (default 5)")
    p.add_argument(
        "--score-threshold",
        "--threshold",
        dest="score_threshold",
        type=fraction,
        default=DEFAULT_DETECTION.score_threshold,
        help="detections scoring below it are left out "
        f"(default {DEFAULT_DETECTION.score_threshold}; --threshold is the older name)",
    )
    p.add_argument(
        "--iou-threshold",
        type=fraction,
        default=DEFAULT_DETECTION.iou_threshold,
        help="YOLO models: a box overlapping a better one of its class by more is dropped "
        f"(default {DEFAULT_DETECTION.iou_threshold})",
    )
    p.add_argument(
        "--max-detections",
        type=positive_int,
        default=DEFAULT_DETECTION.max_detections,
        help=f"at most this many detections per image (default {DEFAULT_DETECTION.max_detections})",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse larger images (default {DEFAULT_MAX_PIXELS})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.add_argument(
        "--fps",
        type=float,
        default=0.0,
        help="videos and streams: frames taken per second (default 0: every frame)",
    )
    p.add_argument(
        "--frames",
        type=positive_int,
        default=None,
        help="videos and streams: stop after this many processed frames",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files; video files (.mp4, .mkv, ...) and stream URLs (rtsp://, "
        "http(s)://, v4l2:///dev/video0, picamera2:0) give one line per processed frame",
    )
    p.set_defaults(handler=run)


def read_image_file(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_FILE_BYTES:
            raise InputError(f"{path}: {size} bytes is over the {MAX_IMAGE_FILE_BYTES}-byte limit")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a folder, not an image") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    engine = load_engine(args)
    settings = DetectionSettings(args.score_threshold, args.iou_threshold, args.max_detections)
    for number, arg in enumerate(args.images):
        if is_video(arg):
            predict_video(
                engine,
                arg,
                fps=max(0.0, args.fps),
                frames=args.frames,
                top_k=args.top_k,
                settings=settings,
                as_json=args.json,
            )
            continue
        path = Path(arg)
        try:
            prediction = engine.predict(
                read_image_file(path),
                max_pixels=args.max_pixels,
                top_k=args.top_k,
                detection=settings,
            )
        except InputError as exc:
            message = str(exc)
            raise InputError(
                message if message.startswith(str(path)) else f"{path}: {message}"
            ) from exc
        if args.json:
            print(json.dumps(prediction_to_dict(prediction, image=str(path))), flush=True)
        else:
            text = format_prediction(
                str(path), prediction, first=number == 0, threshold=args.score_threshold
            )
            print(text, flush=True)
    return 0
