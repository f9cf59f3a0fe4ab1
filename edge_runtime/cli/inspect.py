"""``edge-runtime inspect``: what a model or bundle contains, without running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge_runtime.inference.source import load_source
from edge_runtime.inference.types import TensorSpec


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("inspect", help="show tensors, ops, labels and manifest of a model")
    p.add_argument("model", type=Path, metavar="MODEL", help=".tflite file or .edgebundle")
    p.add_argument(
        "--labels", type=Path, default=None, help="labels file to check against the model"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def _tensor(t: TensorSpec) -> dict[str, Any]:
    return {
        "name": t.name,
        "index": t.index,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "scale": t.quantization.scale,
        "zero_point": t.quantization.zero_point,
        "dynamic": t.dynamic,
    }


def describe(path: Path, labels: Path | None = None) -> dict[str, Any]:
    source = load_source(path, labels_path=labels)
    model = source.model_file
    return {
        "path": str(path),
        "model": {
            "name": source.identity.name,
            "version": source.identity.version,
            "sha256": source.identity.sha256,
            "bytes": len(source.content),
        },
        "edgetpu_compiled": model.is_edgetpu,
        "inputs": [_tensor(t) for t in model.inputs],
        "outputs": [_tensor(t) for t in model.outputs],
        "ops": model.op_counts,
        "labels": list(source.labels) if source.labels is not None else None,
        "labels_source": source.labels_source,
        "metadata": {
            "name": model.metadata.name,
            "version": model.metadata.version,
            "mean": list(model.metadata.mean),
            "std": list(model.metadata.std),
        },
        "manifest": dict(source.manifest) if source.manifest is not None else None,
    }


def run(args: argparse.Namespace) -> int:
    info = describe(args.model, args.labels)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["model"]
    print(
        f"{info['path']}: {m['name']} {m['version'] or ''} "
        f"({m['bytes']} bytes, sha256 {m['sha256'][:16]}...)"
    )
    print(f"  Edge TPU compiled: {'yes' if info['edgetpu_compiled'] else 'no'}")
    for role in ("inputs", "outputs"):
        print(f"  {role}:")
        for t in info[role]:
            q = f" scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            dynamic = " (dynamic)" if t["dynamic"] else ""
            print(f"    [{t['index']}] {t['name']}: {t['dtype']}{t['shape']}{q}{dynamic}")
    ops = ", ".join(f"{name} x{count}" for name, count in sorted(info["ops"].items()))
    print(f"  ops: {ops}")
    labels = info["labels"]
    if labels is not None:
        shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
        print(f"  labels ({len(labels)}, from {info['labels_source']}): {shown}")
    else:
        print("  labels: none")
    if info["manifest"] is not None:
        print("  manifest:")
        for line in json.dumps(info["manifest"], indent=2, sort_keys=True).splitlines():
            print(f"    {line}")
    return 0
