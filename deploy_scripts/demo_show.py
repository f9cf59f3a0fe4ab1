"""What ``demo.sh`` prints about the messages it receives: one readable line per fact,
never a raw JSON blob or Python's ``None``.

    python demo_show.py predictions|error|telemetry|state|probation|changes|states|snapshot FILE
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any


def _messages(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _or(value: Any, missing: str) -> str:
    return missing if value is None else str(value)


def predictions(path: str) -> None:
    for p in _messages(path):
        best, model, lat = p["top"][0], p["model"], p["latency_ms"]
        print(
            f"  {p['id']:>16s} -> {best['label']:<6s} {best['score']:.3f}  "
            f"model {model['name']} {model['version']}  invoke {lat['invoke']:.2f} ms"
        )


def changes(path: str) -> None:
    """A camera source's published changes."""
    for p in _messages(path):
        best, ms = p["top"][0], p["latency_ms"]["capture_to_publish"]
        print(
            f"  frame {p['frame_index']:>3d} -> {_or(best['label'], str(best['index'])):<6s} "
            f"{best['score']:.3f}  capture to publish {ms:.1f} ms"
        )
    print(f"  {sum(1 for _ in _messages(path))} changes published")


def states(path: str) -> None:
    print("  state: " + " -> ".join(s["state"] for s in _messages(path)))


def snapshot(path: str) -> None:
    from PIL import Image

    with Image.open(path) as img:
        size = os.path.getsize(path)
        print(f"  snapshot (retained): {img.format} {img.width}x{img.height}, {size} bytes")


def error(path: str) -> None:
    for e in _messages(path):
        print(f"  error {e['error']} for request {e.get('id')}: {e.get('detail')}")


def telemetry(path: str) -> None:
    (t,) = _messages(path)
    inf, lat = t["inference"], t["inference"]["latency_ms"]
    temperature = t["temperature_c"]
    print(
        f"  cpu {t['cpu_percent']}%  rss {t['memory']['rss_bytes'] / 2**20:.0f} MiB  "
        f"temperature {'n/a' if temperature is None else f'{temperature} C'}  "
        f"throttled {_or(t['throttled'], 'n/a')}  "
        f"disk free {t['disk_free_bytes'] / 2**30:.1f} GiB"
        + ("  (n/a: no sensor on this machine)" if temperature is None else "")
    )
    print(
        f"  inferences {inf['count']}  errors {inf['errors']}  p50 {lat['p50']} ms  "
        f"p99 {lat['p99']} ms  model {t['model']['name']} {t['model']['version']}  "
        f"delegate {t['delegate']}"
    )


def _version(ident: dict[str, Any] | None) -> str:
    return "none" if ident is None else f"{ident['name']} {ident['version']}"


def state(path: str) -> None:
    (s,) = _messages(path)
    last = s.get("last_update") or {}
    update = (
        f"{last['version']} {last['result']}"
        + (f" ({last['reason']})" if last.get("reason") else "")
        + (f", health {last['health']}" if last.get("health") else "")
        if last
        else "none"
    )
    print(
        f"  retained state: active {_version(s['active'])}, previous {_version(s['previous'])}, "
        f"last update {update}"
    )


def probation(path: str) -> None:
    (s,) = _messages(path)
    last = s["last_update"]
    print(
        f"  probation of {last['version']}: {last.get('health')} "
        "(the health gate watched its failures and service times; a bad one rolls back)"
    )


if __name__ == "__main__":
    kind, file = sys.argv[1:3]
    {
        "predictions": predictions,
        "error": error,
        "telemetry": telemetry,
        "state": state,
        "probation": probation,
        "changes": changes,
        "states": states,
        "snapshot": snapshot,
    }[kind](file)
