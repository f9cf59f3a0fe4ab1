"""Arguments and model loading shared by the ``edge-runtime`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.inference.delegate import DELEGATE_MODES
from edge_runtime.inference.engine import Engine, InputOverrides
from edge_runtime.inference.types import RESIZE_MODES, ChannelValues, channel_values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def channel_floats(text: str) -> ChannelValues:
    """One number, or one per channel separated by commas (``123.675,116.28,103.53``)."""
    parts = text.split(",")
    if len(parts) > 4:
        raise argparse.ArgumentTypeError(
            f"expected one number or one per channel (at most 4), got {text!r}"
        )
    return channel_values([finite_float(part.strip()) for part in parts])


def fraction(text: str) -> float:
    """A number within 0..1 (a score or IoU threshold)."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number within 0..1, got {text!r}")
    return value


def add_model_arguments(
    parser: argparse.ArgumentParser, *, preprocessing: bool = True, threads: bool = True
) -> None:
    parser.add_argument("--model", required=True, type=Path, help=".tflite file or .edgebundle")
    if threads:
        parser.add_argument(
            "--threads", type=positive_int, default=None, help="interpreter threads"
        )
    parser.add_argument(
        "--delegate",
        choices=DELEGATE_MODES,
        default="auto",
        help="auto: Edge TPU when the model is compiled for it and present; cpu; edgetpu",
    )
    parser.add_argument("--device", default=None, help="Edge TPU device: usb, usb:N, pci, pci:N")
    if preprocessing:
        parser.add_argument("--labels", type=Path, default=None, help="labels file, one per line")
        parser.add_argument(
            "--mean",
            type=channel_floats,
            default=None,
            help="value = (pixel - mean) / std; one number, or one per channel: R,G,B",
        )
        parser.add_argument(
            "--std", type=channel_floats, default=None, help="one number, or one per channel"
        )
        parser.add_argument("--resize", choices=RESIZE_MODES, default=None)


def load_engine(args: argparse.Namespace, *, backend: str | None = None) -> Engine:
    return Engine.load(
        args.model,
        delegate=args.delegate,
        device=args.device,
        threads=args.threads,
        labels=getattr(args, "labels", None),
        overrides=InputOverrides(
            mean=getattr(args, "mean", None),
            std=getattr(args, "std", None),
            resize=getattr(args, "resize", None),
        ),
        backend=backend,
    )
