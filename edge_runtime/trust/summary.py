"""What a verified bundle is and who signed it, as a dict (``--json``) and as text lines."""

from __future__ import annotations

import hashlib
from typing import Any

from edge_runtime.bundle.manifest import format_utc
from edge_runtime.bundle.reader import BundleMeta
from edge_runtime.trust.verifier import Verified


def describe(verified: Verified, meta: BundleMeta) -> dict[str, Any]:
    m = verified.manifest
    t = verified.tally
    return {
        "name": m.name,
        "version": m.version_text,
        "manifest_sha256": hashlib.sha256(meta.manifest_bytes).hexdigest(),
        "signed_by": list(t.valid),
        "threshold": verified.threshold,
        "trust_version": verified.trust_version,
        "ignored_signatures": {"untrusted": list(t.untrusted), "invalid": list(t.invalid)},
        "created": format_utc(m.created),
        "expires": format_utc(m.expires),
        "compatible": list(m.compatible),
        "model": m.model,
        "labels": m.labels,
        "golden": m.golden,
        "files": {
            name: {"size": e.size, "sha256": e.sha256} for name, e in sorted(m.files.items())
        },
        "input": dict(m.raw["input"]),
        "outputs": {"kind": m.outputs.kind, "tensors": len(m.outputs.tensors)},
    }


def text_lines(info: dict[str, Any]) -> list[str]:
    lines = [
        f"bundle:     {info['name']} {info['version']}",
        f"signed by:  {len(info['signed_by'])} trusted key(s), threshold {info['threshold']} "
        f"(trust file v{info['trust_version']})",
    ]
    lines += [f"  {keyid}" for keyid in info["signed_by"]]
    for kind in ("untrusted", "invalid"):
        lines += [f"  ignored ({kind}): {keyid}" for keyid in info["ignored_signatures"][kind]]
    lines += [
        f"created:    {info['created']}",
        f"expires:    {info['expires']}",
        f"compatible: {', '.join(info['compatible'])}",
        f"model:      {info['model']}  labels: {info['labels'] or '-'}  "
        f"golden: {info['golden'] or '-'}",
        f"outputs:    {info['outputs']['kind']} ({info['outputs']['tensors']} tensor(s))",
        "files:",
    ]
    width = max(len(name) for name in info["files"])
    for name, entry in info["files"].items():
        lines.append(f"  {name:<{width}}  {entry['size']:>10} bytes  sha256 {entry['sha256']}")
    return lines
