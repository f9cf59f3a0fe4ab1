"""Class labels: from a file, from a bundle, or embedded in the ``.tflite``, in that order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_runtime.errors import LabelsError
from edge_runtime.inference.modelfile import ModelFile

Labels = tuple[str, ...]


def parse_labels(text: str) -> Labels:
    """One label per line. ``index label`` or ``index: label`` lines (the COCO/Coral
    format) are placed at their index; blank lines at the end are dropped."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    indexed: dict[int, str] = {}
    for line in lines:
        head, _, rest = line.strip().replace(":", " ", 1).partition(" ")
        if not (head.isdigit() and rest.strip()):
            indexed = {}
            break
        indexed[int(head)] = rest.strip()
    if indexed and len(indexed) == len(lines):
        size = max(indexed) + 1
        return tuple(indexed.get(i, "") for i in range(size))
    return tuple(line.strip() for line in lines)


def read_labels_file(path: Path) -> Labels:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from exc
    labels = parse_labels(text)
    if not labels:
        raise LabelsError(f"labels file {path} is empty")
    return labels


def embedded_labels(model: ModelFile, files: Mapping[str, bytes]) -> Labels | None:
    """Labels from the model's associated files: the file its metadata names as the
    output's axis labels, else a lone ``*.txt`` whose name mentions labels."""
    candidates = [name for name in model.metadata.label_files if name in files]
    if not candidates:
        candidates = [n for n in files if n.lower().endswith(".txt") and "label" in n.lower()]
    if len(candidates) != 1 and not model.metadata.label_files:
        return None
    if not candidates:
        return None
    try:
        return parse_labels(files[candidates[0]].decode("utf-8"))
    except UnicodeDecodeError:
        return None


def check_labels(labels: Sequence[str], classes: int, source: str) -> None:
    """A classification model's labels must match its class count (one extra
    leading background label is accepted, as many SSD and Coral label files have)."""
    if len(labels) not in (classes, classes + 1):
        raise LabelsError(
            f"{source} has {len(labels)} labels but the model outputs {classes} classes"
        )
