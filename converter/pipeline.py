"""``edge-convert`` from options to bundle: the orchestration, no argument parsing.

Steps: check the options; find the images; quantize (TensorFlow for Keras/SavedModel,
ai-edge-quantizer for a float ``.tflite``); validate float vs int8 through the device's
interpreter and preprocessing; apply the accuracy gate; check (and compile) for the Edge
TPU; write the bundle atomically. Nothing is written unless every step passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from converter import bundle_builder, edgetpu, monitoring
from converter.calibration import calibration_tensors, float_spec, list_images
from converter.capture import captured_output
from converter.runner import ModelRunner
from converter.source_models import SOURCE_FORMATS, SourceModel, SourceRunner
from converter.source_models import load as load_source
from converter.validation import ValidationSet, evaluate, load_validation, to_tensor
from edge_runtime.bundle.manifest import NAME_RE
from edge_runtime.bundle.semver import SemVer
from edge_runtime.errors import BundleError, ConfigError, EdgeError, ModelError
from edge_runtime.inference.labels import check_labels, read_labels_file
from edge_runtime.inference.modelfile import looks_like_tflite, read_model
from edge_runtime.inference.types import (
    DETECTION_FORMATS,
    ChannelValues,
    InputSpec,
    channel_json,
)

log = logging.getLogger(__name__)

GOLDEN_COUNT = 6
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass(frozen=True)
class Options:
    model: Path
    calibration: Path
    out: Path
    name: str
    version: str
    labels: Path | None = None
    validation: Path | None = None
    input_type: str = "int8"
    edgetpu: bool = False
    mean: ChannelValues = 127.5  # one value, or a tuple of one per channel
    std: ChannelValues = 127.5
    resize: str = "stretch"
    color: str | None = None
    max_accuracy_drop: float = 0.01
    max_samples: int = 200
    expires_days: int = 365
    compatible: tuple[str, ...] = ("*",)
    keep_float: bool = False
    sign_key: Path | None = None
    progress: TextIO | None = None
    torch_factory: str | None = None  # --torch MODULE:FACTORY (then ``model`` is unused)
    input_shape: tuple[int, ...] | None = None  # --input-shape 1,C,H,W (NCHW sources)
    output_format: str | None = None  # --output-format ssd|yolov5|yolov8|yolo-end2end


def run(opts: Options) -> dict[str, Any]:
    """Convert, validate and bundle; returns the report (also stored in the manifest).

    Raises:
        EdgeError: any bad input or a failed gate; no bundle is left behind then.
    """
    _check_options(opts)
    signing_key = _load_key(opts.sign_key) if opts.sign_key is not None else None
    labels = read_labels_file(opts.labels) if opts.labels else None
    images = list_images(opts.calibration)
    fmt = "torch" if opts.torch_factory else _model_format(opts.model)
    started = time.monotonic()
    source = _source(opts, fmt)
    float_model, int8_model, spec, used = _quantize(opts, fmt, images, source)
    calib_seconds = round(time.monotonic() - started, 2)

    int8_runner = ModelRunner(int8_model)
    float_runner: Any = (
        ModelRunner(float_model) if source is None else SourceRunner(source.reference)
    )
    kind, roles, head = bundle_builder.output_kind(
        int8_model, input_shape=int8_runner.input_shape, output_format=opts.output_format
    )
    if labels is not None and kind == "classification":
        classes = int(np.prod(int8_runner.outputs[0].shape))
        check_labels(labels, classes, f"labels file {opts.labels}")
    dataset = (
        load_validation(opts.validation, labels)
        if opts.validation
        else ValidationSet(tuple(used), None, f"{opts.calibration} (calibration images, no labels)")
    )
    metrics = evaluate(
        float_runner,
        int8_runner,
        dataset,
        spec,
        classification=kind == "classification",
        progress=opts.progress,
    )
    metrics["source"] = dataset.source
    watched = monitoring.reference(
        int8_runner, dataset.samples, spec, kind=kind, roles=roles, source=dataset.source
    )

    report: dict[str, Any] = {
        "source": {"path": opts.torch_factory or str(opts.model), "format": fmt},
        "converter": _converter_name(fmt),
        "size_bytes": {"float": len(float_model), "int8": len(int8_model)},
        "input": _input_summary(int8_runner, spec),
        "calibration": {
            "samples": len(used),
            "source": str(opts.calibration),
            "seconds": calib_seconds,
        },
        "validation": metrics,
        "max_accuracy_drop": opts.max_accuracy_drop,
        "ops": read_model(int8_model).op_counts,
        "output_kind": kind,
    }
    if source is not None:
        report["source"]["float_reference"] = source.runtime
        if source.end_to_end is not None:
            report["end_to_end"] = source.end_to_end
    if head is not None:
        units = _box_units(float_runner, dataset, spec) if head != "yolo-end2end" else "pixels"
        report["detection_format"] = {"format": head, "box_units": units}
    if watched is not None:  # in metrics: runtimes that predate it still take the bundle
        report["monitoring"] = {"reference": watched}
    drop = metrics.get("accuracy_drop")
    if drop is not None and drop > opts.max_accuracy_drop:
        raise ModelError(
            f"accuracy drop {drop:.4f} "
            f"(float {metrics['float_top1']:.4f} -> int8 {metrics['int8_top1']:.4f}) "
            f"is over --max-accuracy-drop {opts.max_accuracy_drop}; no bundle written"
        )

    files: dict[str, bytes] = {bundle_builder.MODEL_MEMBER: int8_model}
    if opts.edgetpu:
        check = edgetpu.check_model(int8_model)
        compiled, compiler = edgetpu.compile_model(int8_model)
        report["edgetpu"] = {**check.to_dict(), "compiler": compiler}
        if compiled is not None:
            files[bundle_builder.MODEL_MEMBER] = compiled
            files[bundle_builder.CPU_MODEL_MEMBER] = int8_model
    if labels is not None:
        files[bundle_builder.LABELS_MEMBER] = ("\n".join(labels) + "\n").encode("utf-8")
    if opts.keep_float:
        files[bundle_builder.FLOAT_MODEL_MEMBER] = float_model
    golden_inputs = [to_tensor(s, int8_runner.spec(spec)) for s in dataset.samples[:GOLDEN_COUNT]]
    files[bundle_builder.GOLDEN_MEMBER] = bundle_builder.golden_vectors(int8_runner, golden_inputs)
    report["golden"] = {"samples": len(golden_inputs), "outputs": len(int8_runner.outputs)}

    manifest = bundle_builder.manifest_for(
        name=opts.name,
        version=opts.version,
        runner=int8_runner,
        model=int8_model,
        spec=spec,
        labels=labels is not None,
        golden=True,
        metrics=report,
        expires_days=opts.expires_days,
        compatible=opts.compatible,
        detection_format=report.get("detection_format"),
    )
    try:
        bundle_builder.write(opts.out, manifest, files)
    except OSError as exc:
        raise BundleError(f"cannot write the bundle {opts.out}: {exc}") from exc
    report["bundle"] = str(opts.out)
    report["signed"] = False
    if signing_key is not None:
        _sign(opts.out, signing_key)
        report["signed"] = True
    return report


def _check_options(opts: Options) -> None:
    if not NAME_RE.match(opts.name):
        raise ConfigError(
            f"--name {opts.name!r} must be 1..64 characters of a-z, 0-9, '.', '_', '-'"
        )
    try:
        SemVer.parse(opts.version)
    except EdgeError as exc:
        raise ConfigError(
            f"--version {opts.version!r} is not a semantic version like 1.2.0"
        ) from exc
    if opts.torch_factory is None and not opts.model.exists():
        raise ConfigError(f"model {opts.model} does not exist")
    if opts.output_format is not None and opts.output_format not in DETECTION_FORMATS:
        raise ConfigError(
            f"--output-format must be one of {', '.join(DETECTION_FORMATS)}, "
            f"got {opts.output_format!r}"
        )
    if opts.input_type not in ("int8", "uint8"):
        raise ConfigError(f"--input-type must be int8 or uint8, got {opts.input_type!r}")
    if 0 in (opts.std if isinstance(opts.std, tuple) else (opts.std,)):
        raise ConfigError("--std must not be 0")
    if not 0 <= opts.max_accuracy_drop <= 1:
        raise ConfigError(f"--max-accuracy-drop must be in 0..1, got {opts.max_accuracy_drop}")
    if opts.max_samples < 1:
        raise ConfigError(f"--max-samples must be at least 1, got {opts.max_samples}")
    if opts.expires_days < 1:
        raise ConfigError(f"--expires-days must be at least 1, got {opts.expires_days}")
    if not opts.out.parent.is_dir():
        raise ConfigError(f"output folder {opts.out.parent} does not exist")
    if opts.sign_key is not None and not opts.sign_key.is_file():
        raise ConfigError(f"signing key {opts.sign_key} does not exist")


def _model_format(path: Path) -> str:
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelError(
                f"{path} is a folder without saved_model.pb; expected a SavedModel folder"
            )
        return "saved_model"
    if path.suffix.lower() in KERAS_SUFFIXES:
        return "keras" if path.suffix.lower() == ".keras" else "h5"
    if path.suffix.lower() in (".onnx", ".pt2"):
        return path.suffix.lower()[1:]
    with open(path, "rb") as fh:
        head = fh.read(8)
    if looks_like_tflite(head):
        return "tflite"
    raise ModelError(
        f"{path} is not a Keras .keras/.h5 file, a SavedModel folder, a .tflite, an .onnx "
        "or a PyTorch .pt2 model"
    )


def _source(opts: Options, fmt: str) -> SourceModel | None:
    """An ONNX or PyTorch model read and converted to a float ``.tflite``; None for the
    other formats."""
    if fmt not in SOURCE_FORMATS:
        if opts.input_shape is not None:
            raise ConfigError("--input-shape is for ONNX and PyTorch models only")
        return None
    return load_source(fmt, opts.model, opts.torch_factory, opts.input_shape)


def _converter_name(fmt: str) -> str:
    if fmt in SOURCE_FORMATS:
        return "litert-torch + ai-edge-quantizer"
    return "tensorflow" if fmt != "tflite" else "ai-edge-quantizer"


def _box_units(runner: Any, dataset: ValidationSet, spec: InputSpec) -> str:
    """``pixels`` when the float model's YOLO boxes reach beyond 2 on a few samples (an
    ONNX export's input pixels), else ``normalized`` (a TFLite export's 0..1)."""
    largest = 0.0
    for sample in dataset.samples[:8]:
        out = runner.dequantize(runner.run(to_tensor(sample, runner.spec(spec))))[0]
        rows = out[0] if out.ndim == 3 else out
        boxes = rows[:4] if rows.shape[0] < rows.shape[1] else rows[:, :4]
        largest = max(largest, float(np.nanmax(np.abs(boxes))))
    return "pixels" if largest > 2.0 else "normalized"


def _quantize(
    opts: Options, fmt: str, images: Any, source: SourceModel | None = None
) -> tuple[bytes, bytes, InputSpec, list[Path]]:
    """Float and int8 models, the float input spec used, and the calibration files used."""
    specs: list[InputSpec] = []
    used: list[Path] = []

    def calibrate(shape: Sequence[int]) -> list[np.ndarray]:
        specs.append(float_spec(shape, opts.mean, opts.std, opts.resize, opts.color))
        tensors, files = calibration_tensors(
            images, specs[-1], max_samples=opts.max_samples, progress=opts.progress
        )
        used[:] = files
        return tensors

    if fmt == "tflite" or source is not None:
        from converter.quantize_tflite import float_input_shape, quantize_float_tflite

        float_model = opts.model.read_bytes() if source is None else source.float_model
        tensors = calibrate(float_input_shape(float_model))
        int8_model = quantize_float_tflite(float_model, tensors, io_type=opts.input_type)
        return float_model, int8_model, specs[-1], used
    with captured_output():  # TensorFlow's import-time notices
        from converter import tf_backend  # TensorFlow is imported only here, only when needed

    converted = tf_backend.convert(opts.model, calibrate, io_type=opts.input_type)
    return converted.float_model, converted.int8_model, specs[-1], used


def _input_summary(runner: ModelRunner, spec: InputSpec) -> dict[str, Any]:
    norm = spec.normalization
    return {
        "shape": list(runner.input_shape),
        "dtype": runner.input_dtype,
        "scale": runner.input_scale,
        "zero_point": runner.input_zero_point,
        "mean": channel_json(norm.mean) if norm else None,
        "std": channel_json(norm.std) if norm else None,
        "resize": spec.resize,
        "color": spec.color,
    }


def _load_key(path: Path) -> Any:
    from edge_runtime.trust.keys import load_signing_key

    return load_signing_key(path)


def _sign(out: Path, key: Any) -> None:
    """Sign the written bundle; on failure remove it (no unsigned bundle is left)."""
    from edge_runtime.trust.signing import sign_bundle

    try:
        sign_bundle(out, key)
    except EdgeError:
        out.unlink(missing_ok=True)
        raise
