"""The summary ``edge-runtime inspect`` prints: one line per fact a person asks first
(what model, what goes in and out, labels, accuracy, signatures, size), from the report
``inspect.describe`` builds. ``--json`` gives the whole report (tensors, ops, manifest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Labels shown by name before "..."
SHOWN_LABELS = 6


def summary_lines(info: Mapping[str, Any]) -> list[str]:
    """The text summary of a report from ``inspect.describe``."""
    m = info["model"]
    manifest: Mapping[str, Any] | None = info["manifest"]
    kind = "bundle" if manifest is not None else "TFLite model"
    rows = [
        ("model", f"{m['name']} {m['version'] or '(no version)'}, sha256 {m['sha256'][:16]}..."),
        *(("input", _input(t, info, manifest)) for t in info["inputs"]),
        ("outputs", _outputs(info["output_kind"], info["outputs"], info.get("detection_format"))),
        ("labels", _labels(info["labels"], info["labels_source"])),
        ("accuracy", _accuracy(manifest)),
        ("signatures", _signatures(info["signatures"])),
        ("size", _size(info, manifest)),
        ("ops", ", ".join(f"{name} x{count}" for name, count in sorted(info["ops"].items()))),
        ("Edge TPU", "compiled for it" if info["edgetpu_compiled"] else "not compiled for it"),
    ]
    if manifest is not None:
        rows.append(("valid", f"{manifest.get('created')} to {manifest.get('expires') or 'never'}"))
    lines = [f"{info['path']}: {kind}"]
    lines += [f"  {key:<11s} {value}" for key, value in rows]
    lines.append(
        f"  (tensors, ops and the whole manifest: edge-runtime inspect --json {info['path']})"
    )
    return lines


def _tensor(t: Mapping[str, Any]) -> str:
    quant = f" scale {t['scale']:.6g} zero point {t['zero_point']}" if t["scale"] else ""
    # a shape the model leaves to the interpreter (e.g. detection post-processing outputs)
    shape = t["shape"] or "(shape set when run)"
    return f"{t['dtype']} {shape}{quant}{' (dynamic)' if t['dynamic'] else ''}"


def _input(t: Mapping[str, Any], info: Mapping[str, Any], manifest: Any) -> str:
    pre = manifest.get("input", {}) if manifest is not None else {}
    meta = info["metadata"]
    mean = pre.get("mean", meta["mean"] or None)
    std = pre.get("std", meta["std"] or None)
    extra = [f"mean {_num(mean)} std {_num(std)}" if mean is not None else "", pre.get("resize")]
    if pre.get("color"):
        extra.append(f"colour {pre['color']}")
    described = ", ".join(e for e in extra if e)
    return _tensor(t) + (f"; {described}" if described else "")


def _num(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_num(v) for v in value)
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _outputs(
    kind: str, tensors: Sequence[Mapping[str, Any]], head: Mapping[str, str] | None = None
) -> str:
    if head is not None:  # a YOLO layout, decoded by the runtime
        kind = f"{kind} ({head['format']}, boxes {head['box_units']})"
    dtypes = {t["dtype"] for t in tensors}
    if len(tensors) > 1 and len(dtypes) == 1 and not any(t["shape"] or t["scale"] for t in tensors):
        # e.g. detection post-processing: four float tensors the interpreter shapes
        names = ", ".join(t["role"] or t["name"] for t in tensors)
        return f"{kind}: {names} ({dtypes.pop()}, shapes set when run)"
    parts = [(f"{t['role']} " if t["role"] else "") + _tensor(t) for t in tensors]
    return f"{kind}: " + "; ".join(parts)


def _labels(labels: Sequence[str] | None, source: str | None) -> str:
    if labels is None:
        return "none (predict shows class numbers; give --labels FILE to name them)"
    shown = ", ".join(labels[:SHOWN_LABELS]) + (", ..." if len(labels) > SHOWN_LABELS else "")
    return f"{len(labels)} from {source} ({shown})"


def _accuracy(manifest: Any) -> str:
    if manifest is None:
        return "not recorded (bundles made by edge-convert carry their validation)"
    metrics = manifest.get("metrics", {})
    val = metrics.get("validation", {})
    if "int8_top1" not in val:
        return "not measured (converted without a labelled validation set)"
    return (
        f"int8 top-1 {val['int8_top1']:.4f}, float {val['float_top1']:.4f} "
        f"(drop {val['accuracy_drop']:+.4f}, bound {metrics.get('max_accuracy_drop')}) "
        f"on {val.get('samples')} samples of {val.get('source')}"
    )


def _signatures(keyids: Sequence[str] | None) -> str:
    if keyids is None:
        return "none (a .tflite file is not signed; devices take signed bundles)"
    if not keyids:
        return "none: the bundle is unsigned (sign it: edge-fleet sign BUNDLE --key KEY)"
    # loaded here only: the daemon imports every command module and must not carry the
    # signature library until an update is verified
    from edge_runtime.trust.keys import short_id

    return (
        f"{len(keyids)} by key(s) {', '.join(map(short_id, keyids))} "
        "(not checked here: edge-runtime verify BUNDLE --trust FILE)"
    )


def _size(info: Mapping[str, Any], manifest: Any) -> str:
    model = f"model {info['model']['bytes']:,} bytes"
    if manifest is None:
        return model
    float_bytes = manifest.get("metrics", {}).get("size_bytes", {}).get("float")
    was = f" (float model {float_bytes:,} bytes)" if float_bytes else ""
    return f"bundle {info['file_bytes']:,} bytes, {model}{was}"
