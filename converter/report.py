"""The conversion report as text for people (``--json`` prints the dict itself)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_report(report: Mapping[str, Any]) -> str:
    lines: list[str] = []
    src = report.get("source", {})
    lines.append(f"model      {src.get('path')} ({src.get('format')})")
    size = report.get("size_bytes", {})
    if size:
        ratio = size.get("float", 0) / max(size.get("int8", 1), 1)
        lines.append(
            f"size       float {_kb(size.get('float'))} -> int8 {_kb(size.get('int8'))} "
            f"({ratio:.1f}x smaller)"
        )
    inp = report.get("input", {})
    lines.append(
        f"input      {inp.get('shape')} {inp.get('dtype')} scale={inp.get('scale')} "
        f"zero_point={inp.get('zero_point')} "
        f"mean={inp.get('mean')} std={inp.get('std')} resize={inp.get('resize')}"
    )
    cal = report.get("calibration", {})
    lines.append(
        f"calibrate  {cal.get('samples')} images from {cal.get('source')} ({cal.get('seconds')} s)"
    )
    val: dict[str, Any] = report.get("validation", {})
    lines.append(f"validate   {val.get('samples')} samples from {val.get('source')}")
    if "float_top1" in val:
        lines.append(
            f"accuracy   float {val['float_top1']:.4f}  int8 {val['int8_top1']:.4f}  "
            f"drop {val['accuracy_drop']:+.4f} (bound {report.get('max_accuracy_drop')})"
        )
    if "top1_agreement" in val:
        lines.append(f"agreement  top-1 float vs int8 {val['top1_agreement']:.4f}")
    for out in val.get("outputs", []):
        snr = "identical" if out["snr_db"] is None else f"{out['snr_db']:.1f} dB"
        lines.append(
            f"output     {out['name']}: max abs error {out['max_abs_error']:.4g}, SNR {snr}"
        )
    head = report.get("detection_format")
    if head:
        lines.append(f"detection  {head['format']}, box units {head['box_units']}")
    nms = report.get("end_to_end")
    if nms:
        lines.append(_exported_nms(nms, head))
    source = report.get("source", {})
    if source.get("float_reference"):
        lines.append(f"reference  the source model, run by {source['float_reference']}")
    ops = report.get("ops", {})
    lines.append("ops        " + ", ".join(f"{k} x{v}" for k, v in sorted(ops.items())))
    tpu = report.get("edgetpu")
    if tpu:
        lines.append(
            f"edge tpu   {tpu['ops_on_edgetpu']}/{tpu['ops_total']} ops can map to the Edge TPU"
        )
        for fb in tpu["cpu_fallback"]:
            lines.append(f"  cpu      #{fb['position']} {fb['op']}: {'; '.join(fb['problems'])}")
        comp = tpu.get("compiler", {})
        if not comp.get("available"):
            lines.append(f"  compiler {comp.get('log')}")
        else:
            lines.append(f"  compiler exit {comp.get('returncode')}; log:")
            lines.extend("    " + line for line in str(comp.get("log", "")).splitlines())
    if report.get("bundle"):
        lines.append(f"bundle     {report['bundle']} (signed: {report.get('signed', False)})")
    return "\n".join(lines)


def _exported_nms(nms: Mapping[str, Any], head: Mapping[str, Any] | None) -> str:
    """One line: the export's post-processing was cut off and the device's decoder does
    its work."""
    fmt = head["format"] if head else "YOLO"
    carried = ", ".join(
        f"{key.replace('_', ' ')} {nms[key]}"
        for key in ("iou_threshold", "score_threshold", "max_boxes_per_class", "top_k")
        if nms.get(key) is not None
    )
    boxes = "; its box corners turned into centres" if nms.get("boxes") else ""
    return (
        f"head       the export's {nms['op']} (node {nms['node']!r}) and what follows were "
        f"replaced by the device's {fmt} decoder{boxes}; the export's settings: "
        f"{carried or 'not readable'} ([model] score_threshold / iou_threshold / "
        "max_detections set the device's)"
    )


def _kb(value: Any) -> str:
    return "?" if value is None else f"{value / 1024:.1f} KiB"
