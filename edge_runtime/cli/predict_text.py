"""The text ``edge-runtime predict`` prints for one image: a heading with the model and
timings, then a table with a header row (score, class, label when the model has labels,
and for detections the box with its coordinate order)."""

from __future__ import annotations

from edge_runtime.inference.types import Prediction

BOX_HEADING = "box [ymin, xmin, ymax, xmax], 0..1 of the image"
NO_LABELS = "no labels: --labels FILE names the classes"
FIRST_CALL = "first image: includes one-time set-up such as loading image decoders"


def format_prediction(
    image: str, prediction: Prediction, *, first: bool = False, threshold: float | None = None
) -> str:
    """``first``: this image paid the one-time costs, and the heading says so.
    ``threshold``: the detection score threshold, named when nothing reached it."""
    t = prediction.timings
    model = f"{prediction.model.name} {prediction.model.version or ''}".strip()
    notes = [f"preprocess {t.preprocess_ms:.1f} ms, invoke {t.invoke_ms:.1f} ms"]
    if first:
        notes.append(FIRST_CALL)
    heading = f"{image}  ({model}; {'; '.join(notes)})"
    if prediction.detections or prediction.kind == "detection":
        rows = _detections(prediction, threshold)
    elif prediction.top:
        rows = _classes(prediction)
    else:
        rows = _raw(prediction)
    return "\n".join([heading, *rows])


def _label_width(labels: list[str | None]) -> int | None:
    """Width of the label column, or None when no row has a label."""
    if not any(labels):
        return None
    return max(len("label"), *(len(label or "-") for label in labels))


def _classes(prediction: Prediction) -> list[str]:
    width = _label_width([c.label for c in prediction.top])
    if width is None:
        return [f"  {'score':>7s}  {'class':>5s}  ({NO_LABELS})"] + [
            f"  {c.score:7.4f}  {c.index:5d}" for c in prediction.top
        ]
    return [f"  {'score':>7s}  {'class':>5s}  label"] + [
        f"  {c.score:7.4f}  {c.index:5d}  {c.label or '-'}" for c in prediction.top
    ]


def _detections(prediction: Prediction, threshold: float | None) -> list[str]:
    found = prediction.detections
    if not found:
        bound = f" with score >= {threshold:g}" if threshold is not None else ""
        return [f"  no detections{bound}"]
    width = _label_width([d.label for d in found])
    label_head = f"{'label':{width}s}  " if width is not None else ""
    note = f"  ({NO_LABELS})" if width is None else ""
    rows = [f"  {'score':>7s}  {'class':>5s}  {label_head}{BOX_HEADING}{note}"]
    for d in found:
        label = f"{d.label or '-':{width}s}  " if width is not None else ""
        box = ", ".join(f"{v:.3f}" for v in d.box)
        rows.append(f"  {d.score:7.4f}  {d.index:5d}  {label}[{box}]")
    return rows


def _raw(prediction: Prediction) -> list[str]:
    rows = []
    for name, shape, values in prediction.raw:
        head = ", ".join(f"{v:.4g}" for v in values[:8])
        rows.append(f"  {name} {list(shape)}: {head}{', ...' if len(values) > 8 else ''}")
    return rows
