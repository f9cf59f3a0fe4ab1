"""``edge-convert``: a float model and sample images in, a validated int8 bundle out.

edge-convert MODEL --calibration DIR --out OUT.edgebundle --name NAME --version SEMVER
    [--torch MODULE:FACTORY --input-shape 1,C,H,W] [--output-format ssd|yolov5|yolov8]
    [--labels FILE] [--validation DIR|NPZ] [--input-type int8|uint8] [--edgetpu]
    [--mean M] [--std S] [--resize stretch|crop|letterbox] [--max-accuracy-drop 0.01]
    [--max-samples N] [--expires-days D] [--compatible CLASS[,CLASS]] [--sign-key KEY] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_runtime import __version__
from edge_runtime.cli.common import channel_floats
from edge_runtime.cli.main import run_cli
from edge_runtime.errors import ConfigError
from edge_runtime.inference.types import DETECTION_FORMATS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-convert",
        description="Convert a float Keras/SavedModel/.tflite/ONNX/PyTorch model to a "
        "full-integer int8 model, validate it against the float one, and pack it as an "
        ".edgebundle.",
    )
    p.add_argument("--version-info", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument(
        "model",
        type=Path,
        nargs="?",
        help="Keras .keras/.h5 file, SavedModel folder, float .tflite, .onnx or PyTorch .pt2 "
        "(none with --torch)",
    )
    p.add_argument(
        "--torch",
        metavar="MODULE:FACTORY",
        help="a PyTorch model: FACTORY() in MODULE returns the nn.Module (needs --input-shape)",
    )
    p.add_argument(
        "--input-shape",
        type=_shape,
        metavar="1,C,H,W",
        help="the NCHW input shape of an ONNX or PyTorch model, where the model does not fix it",
    )
    p.add_argument(
        "--output-format",
        choices=DETECTION_FORMATS,
        help="the detection layout, where the converter cannot tell it from the model",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of sample images (or one subfolder per class)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="OUT.edgebundle")
    p.add_argument("--name", required=True, help="model name in the manifest ([a-z0-9._-])")
    p.add_argument("--version", required=True, metavar="SEMVER", help="model version, e.g. 1.0.0")
    p.add_argument("--labels", type=Path, help="labels file, one per line, in output order")
    p.add_argument(
        "--validation",
        type=Path,
        metavar="DIR|NPZ",
        help="class subfolders named as in the labels, or .npz with x (uint8 images) and y",
    )
    p.add_argument(
        "--input-type",
        choices=("int8", "uint8"),
        default="int8",
        help="dtype of the int8 model's input and output tensors (default int8)",
    )
    p.add_argument(
        "--edgetpu",
        action="store_true",
        help="check Edge TPU compatibility and run edgetpu_compiler when on the PATH",
    )
    p.add_argument(
        "--mean",
        type=channel_floats,
        default=127.5,
        help="value = (pixel - mean) / std; one number or one per channel, "
        "e.g. 123.675,116.28,103.53 (default 127.5)",
    )
    p.add_argument(
        "--std",
        type=channel_floats,
        default=127.5,
        help="one number or one per channel, e.g. 58.395,57.12,57.375 (default 127.5)",
    )
    p.add_argument("--resize", choices=("stretch", "crop", "letterbox"), default="stretch")
    p.add_argument(
        "--color",
        choices=("RGB", "BGR"),
        default=None,
        help="channel order the model expects (default RGB; grayscale models use L)",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=0.01,
        help="fail when float top-1 minus int8 top-1 exceeds this (default 0.01)",
    )
    p.add_argument(
        "--max-samples", type=int, default=200, help="calibration images used at most (default 200)"
    )
    p.add_argument(
        "--expires-days", type=int, default=365, help="bundle lifetime in days (default 365)"
    )
    p.add_argument(
        "--compatible",
        action="append",
        metavar="CLASS[,CLASS]",
        help='device classes allowed to install it; repeat or comma-separate (default "*")',
    )
    p.add_argument(
        "--keep-float", action="store_true", help="also store the float model in the bundle"
    )
    p.add_argument(
        "--sign-key", type=Path, metavar="KEY", help="Ed25519 private key to sign the bundle with"
    )
    p.add_argument(
        "--progress", action="store_true", help="progress bars on stderr even when not a terminal"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(handler=_handle)
    return p


def _handle(args: argparse.Namespace) -> int:
    from converter.pipeline import Options, run
    from converter.report import format_report

    if (args.model is None) == (args.torch is None):
        raise ConfigError("give a MODEL file or --torch MODULE:FACTORY (one of them)")
    opts = Options(
        model=args.model or Path("."),
        torch_factory=args.torch,
        input_shape=args.input_shape,
        output_format=args.output_format,
        calibration=args.calibration,
        out=args.out,
        name=args.name,
        version=args.version,
        labels=args.labels,
        validation=args.validation,
        input_type=args.input_type,
        edgetpu=args.edgetpu,
        mean=args.mean,
        std=args.std,
        resize=args.resize,
        color=args.color,
        max_accuracy_drop=args.max_accuracy_drop,
        max_samples=args.max_samples,
        expires_days=args.expires_days,
        compatible=_classes(args.compatible),
        keep_float=args.keep_float,
        sign_key=args.sign_key,
        progress=sys.stderr if args.progress else None,
    )
    report = run(opts)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_report(report))
    return 0


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1,C,H,W, got {text!r}") from None
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected 1,C,H,W with positive sizes, got {text!r}")
    return dims


def _classes(values: Sequence[str] | None) -> tuple[str, ...]:
    classes = tuple(c.strip() for v in values or ["*"] for c in v.split(",") if c.strip())
    return classes or ("*",)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
