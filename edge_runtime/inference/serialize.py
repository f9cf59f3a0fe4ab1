"""Predictions as the JSON objects of the contract (``predict --json``, MQTT)."""

from __future__ import annotations

from typing import Any

from edge_runtime.inference.types import Prediction

#: Raw outputs larger than this are cut in JSON (``"truncated": true``).
MAX_RAW_VALUES = 4096


def _ms(value: float) -> float:
    return round(value, 3)


def prediction_to_dict(prediction: Prediction, *, image: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if image is not None:
        out["image"] = image
    model = prediction.model
    out["model"] = {"name": model.name, "version": model.version, "sha256": model.sha256}
    if prediction.kind == "detection":
        out["detections"] = [
            {
                "index": d.index,
                "label": d.label,
                "score": round(d.score, 6),
                "box": [round(v, 6) for v in d.box],
            }
            for d in prediction.detections
        ]
    elif prediction.kind == "classification":
        out["top"] = [
            {"index": c.index, "label": c.label, "score": round(c.score, 6)} for c in prediction.top
        ]
    else:
        out["outputs"] = [
            {
                "name": name,
                "shape": list(shape),
                "values": [round(v, 6) for v in values[:MAX_RAW_VALUES]],
                "truncated": len(values) > MAX_RAW_VALUES,
            }
            for name, shape, values in prediction.raw
        ]
    t = prediction.timings
    out["latency_ms"] = {
        "preprocess": _ms(t.preprocess_ms),
        "invoke": _ms(t.invoke_ms),
        "postprocess": _ms(t.postprocess_ms),
    }
    return out
